package bwrap

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// The syscall filter every sandbox runs under (bwrap --seccomp): a deny
// list at least as strict as Docker's default profile for an unprivileged
// container. bwrap installs it, with no_new_privs, just before it execs the
// job, so it binds the job and everything the job starts; no process of
// the sandbox can remove it.
//
// What it does, in order:
//   - a syscall of another architecture than the agent's (32-bit x86 through
//     int 0x80, x32, arm32 compat) kills the process: its numbers mean other
//     calls, and a deny list of one table would let them through;
//   - the calls of deniedSyscalls (and of archDeniedSyscalls) fail with
//     EPERM: kernel modules, kexec, reboot, swap, clocks, accounting,
//     quotas, keyrings, BPF, perf events, userfaultfd, io_uring, handles to
//     inodes by number, every way to mount, unmount or change namespaces,
//     NUMA policies, kcmp and pidfd_getfd, syslog, vhangup, raw port I/O;
//   - clone with any namespace flag fails with EPERM, and clone3 with ENOSYS
//     (its flags are behind a pointer the filter cannot read), so that C
//     libraries fall back to clone;
//   - personality is allowed only for the values Docker allows (0, PER_LINUX32,
//     UNAME26, both, and the 0xffffffff query): no ADDR_NO_RANDOMIZE,
//     READ_IMPLIES_EXEC and the like;
//   - everything else is allowed.
//
// ptrace, process_vm_readv and process_vm_writev are allowed, as Docker
// allows them on Linux ≥ 4.8: since 4.8 the kernel checks the filter again
// after a tracer changes a syscall, so tracing cannot get around it, and
// the executor already needs Linux ≥ 5.3 (pidfds). A job can only trace its
// own processes: the sandbox's pid namespace holds nothing else, and every
// job slot has its own uid. Debuggers, strace and sanitizers' leak checkers
// need it.

// Fields of struct seccomp_data, as offsets for BPF loads. Arguments are
// 64 bits wide; the filter reads the low 32 bits of the ones it checks,
// which are the whole value for the int arguments of personality and for
// clone's namespace flags.
const (
	seccompDataNR      = 0
	seccompDataArch    = 4
	seccompDataArg0Low = 16 // little-endian: args[0]'s low word comes first
)

// Return values of a seccomp filter.
const (
	seccompRetKillProcess = 0x80000000
	seccompRetErrno       = 0x00050000
	seccompRetAllow       = 0x7fff0000
)

// cloneNamespaceFlags are clone's flags that create namespaces (CLONE_NEWTIME
// is not among them: for clone it is part of the exit signal's byte).
const cloneNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// allowedPersonalities are the personality(2) arguments Docker's default
// profile allows: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26,
// and 0xffffffff, which only queries.
var allowedPersonalities = []uint32{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// seccompProgram returns the sandboxes' filter as bwrap --seccomp reads it:
// an array of struct sock_filter in the machine's byte order.
func seccompProgram(nested bool) ([]byte, error) {
	prog, err := seccompFilter(nested)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 8*len(prog))
	for _, ins := range prog {
		out = binary.NativeEndian.AppendUint16(out, ins.Code)
		out = append(out, ins.Jt, ins.Jf)
		out = binary.NativeEndian.AppendUint32(out, ins.K)
	}
	return out, nil
}

func load(offset uint32) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offset}
}

func jumpEq(k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: jt, Jf: jf, K: k}
}

func jumpGE(k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, Jt: jt, Jf: jf, K: k}
}

func jumpSet(k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: jt, Jf: jf, K: k}
}

func ret(k uint32) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k}
}
