package bwrap

import "golang.org/x/sys/unix"

const (
	seccompAuditArch = unix.AUDIT_ARCH_AARCH64
	seccompX32Bit    = 0 // no second ABI under the same audit arch
)

// archDeniedSyscalls: arm64 has only the generic table, all in
// deniedSyscalls.
var archDeniedSyscalls []uint32
