// Command sandboxprobe is built by the bwrap tests (CGO_ENABLED=0) and run
// inside sandboxes:
//
//	sandboxprobe syscalls   calls each syscall the filter denies, with
//	                        arguments the kernel alone would refuse
//	                        differently or accept, and prints "name errno"
//	sandboxprobe alloc N    allocates and touches N MiB, then prints done
//	sandboxprobe int80      makes a 32-bit x86 syscall (amd64 only)
//	sandboxprobe x32        makes an x32 syscall (amd64 only)
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// call is a syscall and its arguments.
type call struct {
	name string
	nr   uintptr
	args [6]uintptr
}

// bad is an address no process maps.
const bad = 1

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sandboxprobe syscalls|alloc N|int80|x32")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "syscalls":
		for _, c := range append(calls(), archCalls()...) {
			_, _, errno := syscall.RawSyscall6(c.nr, c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5])
			fmt.Printf("%s %d\n", c.name, int(errno))
		}
	case "alloc":
		n, _ := strconv.Atoi(os.Args[2])
		var keep [][]byte
		for range n {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("done", len(keep))
	case "int80":
		int80()
		fmt.Println("int80 returned")
	case "x32":
		_, _, errno := syscall.RawSyscall(unix.SYS_GETPID|0x40000000, 0, 0, 0)
		fmt.Println("x32 returned", int(errno))
	default:
		os.Exit(2)
	}
}

func calls() []call {
	name := uintptr(unsafe.Pointer(&[]byte("x\x00")[0]))
	return []call{
		{"init_module", unix.SYS_INIT_MODULE, [6]uintptr{bad, 0, bad}},
		{"finit_module", unix.SYS_FINIT_MODULE, [6]uintptr{^uintptr(0), bad, 0}},
		{"delete_module", unix.SYS_DELETE_MODULE, [6]uintptr{bad, 0}},
		{"kexec_load", unix.SYS_KEXEC_LOAD, [6]uintptr{0, 0, bad, 0}},
		{"kexec_file_load", unix.SYS_KEXEC_FILE_LOAD, [6]uintptr{^uintptr(0), ^uintptr(0), 0, bad, 0}},
		{"reboot", unix.SYS_REBOOT, [6]uintptr{0, 0, 0, 0}}, // bad magic
		{"swapon", unix.SYS_SWAPON, [6]uintptr{bad, 0}},
		{"swapoff", unix.SYS_SWAPOFF, [6]uintptr{bad}},
		{"clock_settime", unix.SYS_CLOCK_SETTIME, [6]uintptr{unix.CLOCK_REALTIME, bad}},
		{"clock_adjtime", unix.SYS_CLOCK_ADJTIME, [6]uintptr{unix.CLOCK_REALTIME, bad}},
		{"settimeofday", unix.SYS_SETTIMEOFDAY, [6]uintptr{0, 0}}, // a no-op unfiltered
		{"acct", unix.SYS_ACCT, [6]uintptr{0}},
		{"quotactl", unix.SYS_QUOTACTL, [6]uintptr{0, bad, 0, 0}},
		{"quotactl_fd", unix.SYS_QUOTACTL_FD, [6]uintptr{^uintptr(0), 0, 0, 0}},
		{"syslog", unix.SYS_SYSLOG, [6]uintptr{^uintptr(0), 0, 0}},
		{"sethostname", unix.SYS_SETHOSTNAME, [6]uintptr{bad, 1}},
		{"setdomainname", unix.SYS_SETDOMAINNAME, [6]uintptr{bad, 1}},
		{"vhangup", unix.SYS_VHANGUP, [6]uintptr{}},
		{"nfsservctl", unix.SYS_NFSSERVCTL, [6]uintptr{}},
		{"lookup_dcookie", unix.SYS_LOOKUP_DCOOKIE, [6]uintptr{0, bad, 0}},
		{"bpf", unix.SYS_BPF, [6]uintptr{^uintptr(0), 0, 0}},
		{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, [6]uintptr{bad, 0, ^uintptr(0), ^uintptr(0), 0}},
		{"userfaultfd", unix.SYS_USERFAULTFD, [6]uintptr{^uintptr(0)}},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, [6]uintptr{1, bad}},
		{"io_uring_enter", unix.SYS_IO_URING_ENTER, [6]uintptr{^uintptr(0), 0, 0, 0, 0, 0}},
		{"io_uring_register", unix.SYS_IO_URING_REGISTER, [6]uintptr{^uintptr(0), 0, 0, 0}},
		{"keyctl", unix.SYS_KEYCTL, [6]uintptr{0xffff}},
		{"add_key", unix.SYS_ADD_KEY, [6]uintptr{bad, bad, 0, 0, 0}},
		{"request_key", unix.SYS_REQUEST_KEY, [6]uintptr{bad, bad, 0, 0}},
		{"fanotify_init", unix.SYS_FANOTIFY_INIT, [6]uintptr{^uintptr(0), 0}},
		{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, [6]uintptr{^uintptr(0), name, bad, bad, 0}},
		{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, [6]uintptr{^uintptr(0), bad, 0}},
		{"mount", unix.SYS_MOUNT, [6]uintptr{bad, bad, bad, 0, 0}},
		{"umount2", unix.SYS_UMOUNT2, [6]uintptr{name, ^uintptr(0)}},
		{"pivot_root", unix.SYS_PIVOT_ROOT, [6]uintptr{bad, bad}},
		{"mount_setattr", unix.SYS_MOUNT_SETATTR, [6]uintptr{^uintptr(0), 0, 0, 0, 0}},
		{"move_mount", unix.SYS_MOVE_MOUNT, [6]uintptr{^uintptr(0), 0, ^uintptr(0), 0, 0}},
		{"open_tree", unix.SYS_OPEN_TREE, [6]uintptr{^uintptr(0), 0, 0}},
		{"open_tree_attr", unix.SYS_OPEN_TREE_ATTR, [6]uintptr{^uintptr(0), 0, 0, 0, 0}},
		{"fsopen", unix.SYS_FSOPEN, [6]uintptr{bad, 0}},
		{"fsconfig", unix.SYS_FSCONFIG, [6]uintptr{^uintptr(0), 0, 0, 0, 0}},
		{"fsmount", unix.SYS_FSMOUNT, [6]uintptr{^uintptr(0), 0, 0}},
		{"fspick", unix.SYS_FSPICK, [6]uintptr{^uintptr(0), 0, 0}},
		{"unshare", unix.SYS_UNSHARE, [6]uintptr{0}}, // a no-op unfiltered
		{"setns", unix.SYS_SETNS, [6]uintptr{^uintptr(0), 0}},
		{"kcmp", unix.SYS_KCMP, [6]uintptr{0, 0, 0xff, 0, 0}},
		{"pidfd_getfd", unix.SYS_PIDFD_GETFD, [6]uintptr{^uintptr(0), 0, 0}},
		{"mbind", unix.SYS_MBIND, [6]uintptr{0, 0, 0, 0, 0, 0}},
		{"set_mempolicy", unix.SYS_SET_MEMPOLICY, [6]uintptr{0, 0, 0}}, // MPOL_DEFAULT: a no-op unfiltered
		{"set_mempolicy_home_node", unix.SYS_SET_MEMPOLICY_HOME_NODE, [6]uintptr{0, 0, 0, 0}},
		{"get_mempolicy", unix.SYS_GET_MEMPOLICY, [6]uintptr{0, 0, 0, 0, 0}},
		{"migrate_pages", unix.SYS_MIGRATE_PAGES, [6]uintptr{0, 0, 0, 0}},
		{"move_pages", unix.SYS_MOVE_PAGES, [6]uintptr{0, 0, 0, 0, 0, 0}},
		// CLONE_FS with a new mount or user namespace is EINVAL unfiltered:
		// nothing is ever cloned.
		{"clone(CLONE_NEWNS)", unix.SYS_CLONE, [6]uintptr{unix.CLONE_NEWNS | unix.CLONE_FS}},
		{"clone(CLONE_NEWUSER)", unix.SYS_CLONE, [6]uintptr{unix.CLONE_NEWUSER | unix.CLONE_FS}},
		{"clone3", unix.SYS_CLONE3, [6]uintptr{0, 0}},
		{"personality(ADDR_NO_RANDOMIZE)", unix.SYS_PERSONALITY, [6]uintptr{0x0040000}},
		{"personality(READ_IMPLIES_EXEC)", unix.SYS_PERSONALITY, [6]uintptr{0x0400000}},
		{"personality(query)", unix.SYS_PERSONALITY, [6]uintptr{0xffffffff}},
		{"ptrace(PEEKDATA)", unix.SYS_PTRACE, [6]uintptr{unix.PTRACE_PEEKDATA, 1, 0, 0}}, // not a tracee: ESRCH
	}
}
