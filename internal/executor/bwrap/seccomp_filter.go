//go:build amd64 || arm64

package bwrap

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM on every supported architecture.
var deniedSyscalls = []uint32{
	// Kernel modules, kexec, reboot, swap.
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_REBOOT,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF,
	// Host-wide state: clocks, process accounting, quotas, the kernel log,
	// the terminal.
	unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_SETTIMEOFDAY,
	unix.SYS_ACCT, unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_SYSLOG,
	unix.SYS_VHANGUP,
	unix.SYS_NFSSERVCTL, unix.SYS_LOOKUP_DCOOKIE,
	// Kernel attack surface a build does not need.
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	unix.SYS_FANOTIFY_INIT,
	// Files by handle: open_by_handle_at reaches any inode of a mounted
	// filesystem, past the sandbox's mounts.
	unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_OPEN_BY_HANDLE_AT,
	// Other processes' insides and NUMA placement (Docker: CAP_SYS_PTRACE,
	// CAP_SYS_NICE).
	unix.SYS_KCMP, unix.SYS_PIDFD_GETFD,
	unix.SYS_MBIND, unix.SYS_SET_MEMPOLICY, unix.SYS_SET_MEMPOLICY_HOME_NODE,
	unix.SYS_GET_MEMPOLICY, unix.SYS_MIGRATE_PAGES, unix.SYS_MOVE_PAGES,
}

// namespaceSyscalls make mounts and namespaces: denied, except in a
// sandbox that runs a container engine (nested), whose containers need
// them inside the sandbox's own user namespace.
// keyringSyscalls: the kernel's keyrings are not a namespace; denied
// everywhere, but with ENOSYS in a nested sandbox, which container
// runtimes take as "no keyrings here" (EPERM stops crun).
var keyringSyscalls = []uint32{unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY}

var namespaceSyscalls = []uint32{
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_MOUNT_SETATTR,
	unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE, unix.SYS_OPEN_TREE_ATTR,
	unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK,
	unix.SYS_UNSHARE, unix.SYS_SETNS,
	// Host and domain names: the sandbox's are set by bwrap; a container's
	// are its own UTS namespace's.
	unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME,
}

// seccompFilter assembles the filter for this architecture; nested
// allows namespaceSyscalls and clone's namespace flags.
func seccompFilter(nested bool) ([]unix.SockFilter, error) {
	deny := seccompRetErrno | uint32(unix.EPERM)
	p := []unix.SockFilter{
		load(seccompDataArch),
		jumpEq(seccompAuditArch, 1, 0),
		ret(seccompRetKillProcess),
		load(seccompDataNR),
	}
	if seccompX32Bit != 0 {
		// x32 calls carry the x86-64 audit arch, their numbers this bit.
		p = append(p, jumpGE(seccompX32Bit, 0, 1), ret(seccompRetKillProcess))
	}
	denied := append(append([]uint32(nil), deniedSyscalls...), archDeniedSyscalls...)
	if !nested {
		denied = append(denied, keyringSyscalls...)
		denied = append(denied, namespaceSyscalls...)
	}
	for _, nr := range denied {
		p = append(p, jumpEq(nr, 0, 1), ret(deny))
	}
	if nested {
		for _, nr := range keyringSyscalls {
			p = append(p, jumpEq(nr, 0, 1), ret(seccompRetErrno|uint32(unix.ENOSYS)))
		}
	}
	p = append(p, jumpEq(unix.SYS_CLONE3, 0, 1), ret(seccompRetErrno|uint32(unix.ENOSYS)))

	if !nested {
		// clone: deny namespace flags. A holds the syscall number again
		// after this block only when the block was skipped.
		p = append(p,
			jumpEq(unix.SYS_CLONE, 0, 4),
			load(seccompDataArg0Low),
			jumpSet(cloneNamespaceFlags, 0, 1),
			ret(deny),
			ret(seccompRetAllow),
		)
	}

	// personality: allow the listed values only.
	n := len(allowedPersonalities)
	p = append(p, jumpEq(unix.SYS_PERSONALITY, 0, uint8(n+3)), load(seccompDataArg0Low))
	for i, v := range allowedPersonalities {
		p = append(p, jumpEq(v, uint8(n-i), 0))
	}
	p = append(p, ret(deny), ret(seccompRetAllow))

	p = append(p, ret(seccompRetAllow))
	if len(p) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp filter: %d instructions, more than %d", len(p), unix.BPF_MAXINSNS)
	}
	return p, nil
}
