package bwrap

import "golang.org/x/sys/unix"

const (
	seccompAuditArch = unix.AUDIT_ARCH_X86_64
	// seccompX32Bit marks the calls of the x32 ABI (__X32_SYSCALL_BIT).
	seccompX32Bit = 0x40000000
)

// archDeniedSyscalls are denied calls that only this architecture has:
// raw port I/O, obsolete module and filesystem calls, and numbers the
// kernel never implemented.
var archDeniedSyscalls = []uint32{
	unix.SYS_IOPL, unix.SYS_IOPERM,
	unix.SYS_CREATE_MODULE, unix.SYS_GET_KERNEL_SYMS, unix.SYS_QUERY_MODULE,
	unix.SYS__SYSCTL, unix.SYS_SYSFS, unix.SYS_USELIB, unix.SYS_USTAT,
	unix.SYS_AFS_SYSCALL, unix.SYS_TUXCALL, unix.SYS_SECURITY, unix.SYS_VSERVER,
	unix.SYS_GETPMSG, unix.SYS_PUTPMSG,
}
