package bwrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// validateSpec checks what Run cannot pass on to bwrap as given. maxSlot
// is the largest slot the executor can map to a uid.
func validateSpec(spec executor.Spec, maxSlot int) error {
	var errs []error
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		errs = append(errs, errors.New("argv: no command"))
	} else if strings.Contains(spec.Argv[0], "=") {
		// The launcher (env) would take it for a variable assignment.
		errs = append(errs, fmt.Errorf("argv[0] %q: contains '='", spec.Argv[0]))
	}
	for i, a := range spec.Argv {
		if strings.ContainsRune(a, 0) {
			errs = append(errs, fmt.Errorf("argv[%d]: contains a NUL byte", i))
		}
	}
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			errs = append(errs, fmt.Errorf("env: invalid variable name %q", k))
		}
		if strings.ContainsRune(v, 0) {
			errs = append(errs, fmt.Errorf("env %s: value contains a NUL byte", k))
		}
	}
	for i, b := range spec.Binds {
		if err := validateBind(b); err != nil {
			errs = append(errs, fmt.Errorf("binds[%d]: %w", i, err))
		}
	}
	if spec.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v: negative", spec.Timeout))
	}
	if spec.Slot < 0 || spec.Slot > maxSlot {
		errs = append(errs, fmt.Errorf("slot %d: must be between 0 and %d", spec.Slot, maxSlot))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid spec for job %q: %w", spec.JobID, err)
	}
	return nil
}

func validateBind(b executor.Bind) error {
	for _, p := range []string{b.Source, b.Target} {
		if strings.ContainsRune(p, 0) {
			return fmt.Errorf("path %q: contains a NUL byte", p)
		}
		if !filepath.IsAbs(p) {
			return fmt.Errorf("path %q: must be absolute", p)
		}
	}
	if filepath.Clean(b.Target) == "/" {
		return errors.New("target /: cannot replace the sandbox root")
	}
	if _, err := os.Stat(b.Source); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	return nil
}
