package bwrap

import "fmt"

// sandboxUser is the name of the job's user inside the sandbox.
const sandboxUser = "nimbus"

// nobody is the kernel's overflow id: what unmapped host ids (root among
// them) look like inside the sandbox's user namespace.
const nobody = 65534

// accounts are the sandbox's /etc/passwd and /etc/group. They name the
// job's uid (tools such as ssh, whoami and getpwuid callers need an entry)
// and reveal none of the host's accounts.
type accounts struct {
	Passwd, Group []byte
}

func newAccounts(uid, gid int) accounts {
	passwd := "root:x:0:0:root:/root:/usr/sbin/nologin\n"
	group := "root:x:0:\n"
	if uid != 0 && uid != nobody {
		passwd += fmt.Sprintf("%s:x:%d:%d:Nimbus job:%s:/bin/sh\n", sandboxUser, uid, gid, sandboxWorkspace)
	}
	if gid != 0 && gid != nobody {
		group += fmt.Sprintf("%s:x:%d:\n", sandboxUser, gid)
	}
	passwd += fmt.Sprintf("nobody:x:%d:%d:nobody:/nonexistent:/usr/sbin/nologin\n", nobody, nobody)
	group += fmt.Sprintf("nogroup:x:%d:\n", nobody)
	return accounts{Passwd: []byte(passwd), Group: []byte(group)}
}
