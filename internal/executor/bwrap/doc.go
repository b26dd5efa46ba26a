// Package bwrap is the bubblewrap executor: it runs each job in a fresh
// bubblewrap (bwrap ≥ 0.8) sandbox.
//
// Identity. When the agent runs as root, bwrap itself runs as the
// unprivileged host uid and gid Options.UIDBase+slot (no supplementary
// groups) and creates a user namespace that maps only that id, to itself:
// nothing in the sandbox is host root, and host files owned by root are not
// the sandbox's. When the agent is not root, bwrap runs as the agent's uid.
// The job has no capabilities and may not create further user namespaces.
//
// Filesystem. A tmpfs root, read-only after setup, holding:
//   - /usr read-only, and /bin, /lib, /lib64, /sbin... as on the host
//     (symbolic links into /usr on merged-usr systems);
//   - the entries of Options.Etc from the host's /etc, read-only, and an
//     /etc/passwd and /etc/group of the sandbox's own that name its user;
//   - a fresh /proc, a minimal /dev, a private tmpfs on /tmp;
//   - /workspace: a fresh directory owned by the job's uid, read-write, the
//     working directory and default HOME; removed when Run returns unless
//     Options.KeepWorkspace. Under Options.WorkRoot, or, when the job has a
//     disk limit, on its slot's own filesystem (slot_disks.go), with /tmp
//     beside it there instead of a tmpfs. /proc/self/mountinfo then shows
//     their paths on that filesystem, nothing of the host's directories;
//   - Spec.Binds, read-only or read-write as given.
//
// Namespaces. User, pid, ipc, uts (hostname "nimbus"), cgroup, mount and
// network: the job's network namespace holds only a loopback interface.
//
// Syscalls. Every process of the sandbox, bwrap's init included, runs
// under a seccomp filter at least as strict as Docker's default profile
// (seccomp.go); only amd64 and arm64 are supported, New fails elsewhere.
//
// Limits. When the agent is root, each sandbox runs in a cgroup of its own
// from its first instruction (cgroups.go: cgroup v1 and v2), with
// Spec.Limits' CPU, memory and pids limits; a disk limit puts the job's
// writable directories on its slot's filesystem. A job that goes over its
// memory limit (the kernel's OOM killer strikes) or its disk limit is
// stopped, with an *executor.LimitError as Result.Cause. An agent that is
// not root cannot set limits: Run refuses a Spec with any.
//
// Environment. Exactly Spec.Env, plus PATH and HOME when it lacks them
// (and PWD, which bubblewrap sets). The options, environment included, reach
// bwrap through a file descriptor, never its command line.
//
// Lifetime. The sandbox's init is pid 1 of its pid namespace; Run kills it
// (which makes the kernel kill every other process in the namespace,
// daemonised or not) when the job exits, when the context is done, and on
// Spec.Timeout; it returns only once the init has exited, that is once no
// process of the sandbox is left. If the agent dies, bwrap and the init
// die with it (parent-death signals: --die-with-parent). bwrap may exit
// before its init, which the host's init process then reaps: run the agent
// under one that reaps orphans (systemd; docker run --init). The sandbox's
// cgroup is the backstop: once the job has ended, whatever is left in it is
// killed and the cgroup removed. The Executor owns its work root: New
// sweeps what a crashed agent left there (mounts, images, workspaces) and
// in its cgroups; Close unmounts and removes the slots' filesystems and
// the cgroups.
//
// Descriptors. Run marks every descriptor the agent inherited close-on-exec
// (bwrap would hand them to the job); the job gets only stdin (/dev/null)
// and one pipe for stdout and stderr.
//
// Exit codes. The job's exit status as is; 127 when the command is not
// found and 126 when it cannot be executed (the sandbox starts the job
// through /bin/sh's exec); 128+n when signal n killed the job inside; -1
// when Run stopped it (Result.Cause says why).
//
// Host requirements: bubblewrap; Linux ≥ 5.3 (5.7 on cgroup v2, with the
// memory and pids controllers, and cpu for CPU limits, delegated to the
// agent's cgroup); e2fsprogs (mkfs.ext4) and loop devices for disk limits;
// unprivileged user namespaces; WorkRoot and every parent directory traversable (o+x)
// by the sandbox uids, as must be the sources of Spec.Binds (bwrap mounts
// them as that uid). Check tries them all at once.
package bwrap
