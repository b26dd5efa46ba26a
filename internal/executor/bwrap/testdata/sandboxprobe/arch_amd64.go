package main

import "golang.org/x/sys/unix"

func archCalls() []call {
	return []call{
		{"iopl", unix.SYS_IOPL, [6]uintptr{0}},           // level 0: a no-op unfiltered
		{"ioperm", unix.SYS_IOPERM, [6]uintptr{0, 0, 0}}, // turn_on 0: a no-op unfiltered
		{"create_module", unix.SYS_CREATE_MODULE, [6]uintptr{}},
		{"_sysctl", unix.SYS__SYSCTL, [6]uintptr{bad}},
		{"sysfs", unix.SYS_SYSFS, [6]uintptr{99}},
		{"uselib", unix.SYS_USELIB, [6]uintptr{bad}},
		{"ustat", unix.SYS_USTAT, [6]uintptr{0, bad}},
	}
}

// int80 makes the 32-bit getpid syscall (number 20) through int 0x80.
func int80()
