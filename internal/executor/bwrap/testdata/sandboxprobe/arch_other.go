//go:build !amd64

package main

func archCalls() []call { return nil }

func int80() { panic("int80 is amd64 only") }
