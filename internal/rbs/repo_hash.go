package rbs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// RepoHash identifies a workspace of a developer machine: the SHA-256 of the
// machine's host name and the workspace's absolute path. Two clones are two
// sessions (their paths differ, and the agent mirrors paths); the same path
// on two machines is two sessions too.
func RepoHash(clientHost, workspace string) string {
	sum := sha256.Sum256([]byte("nimbus-rbs-v1\x00" + clientHost + "\x00" + workspace))
	return hex.EncodeToString(sum[:])
}

// ValidateRepoHash checks that h is 64 lowercase hex digits, so it is safe
// as a path component.
func ValidateRepoHash(h string) error {
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return fmt.Errorf("repo hash %q: want 64 lowercase hex digits", h)
	}
	return nil
}
