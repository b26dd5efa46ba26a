package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/config"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
)

// AdminMain is `nimbus admin`: maintenance done on the database directly,
// with the server stopped.
func AdminMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	const usage = "Usage: nimbus admin rotate-master-key [flags]\n\n" +
		"  rotate-master-key  make a new master key, reseal every secret with it, and drop the old one\n"
	if len(args) == 0 || args[0] != "rotate-master-key" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var c ServerConfig
	s := config.NewSet("nimbus admin rotate-master-key", stderr)
	c.Register(s)
	keep := s.Bool("keep-old", false, "keep the old key in the file (as a second, opening-only key)")
	s.Usage = func() {
		fmt.Fprintf(stderr, `Usage: nimbus admin rotate-master-key [--data-dir DIR | --database URL --master-key-file FILE] [--keep-old]

Makes a new master key, writes it first in the master key file (so it seals),
reseals every sealed value in the database with it (signing keys, webhook
secrets, the GitHub App key) in one transaction, checks that everything opens
with the new key alone, and then removes the old key from the file (unless
--keep-old). Stop the servers first; with several replicas, give them the new
file before starting them again.

Flags (those of nimbus server; only the storage ones matter here):
`)
		s.PrintDefaults()
	}
	if err := s.Parse(args[1:], getenv, "config"); err != nil {
		return 2
	}
	if err := c.Validate(); err != nil {
		fmt.Fprintf(stderr, "nimbus admin: %v\n", err)
		return 2
	}
	if err := rotateMasterKey(ctx, c, *keep, stdout); err != nil {
		fmt.Fprintf(stderr, "nimbus admin rotate-master-key: %v\n", err)
		return 1
	}
	return 0
}

func rotateMasterKey(ctx context.Context, c ServerConfig, keepOld bool, out io.Writer) error {
	old, err := auth.LoadMasterKeys(c.MasterKeyFile)
	if err != nil {
		return err
	}
	st, err := sqlstore.Open(ctx, c.Database)
	if err != nil {
		return err
	}
	defer st.Close()
	// Everything must open with the current keys before anything changes.
	current, err := auth.NewSealer(old)
	if err != nil {
		return err
	}
	if _, err := auth.OpenKeyring(ctx, st.Keys(), current, nil); err != nil {
		return fmt.Errorf("the database does not open with %s: %w", c.MasterKeyFile, err)
	}
	fresh := auth.NewMasterKey()
	both := append([]auth.MasterKey{fresh}, old...)
	// The file first: if resealing fails half-way (it is one transaction,
	// so it cannot), the old keys are still in it.
	if err := auth.WriteMasterKeys(c.MasterKeyFile, both); err != nil {
		return err
	}
	sealer, err := auth.NewSealer(both)
	if err != nil {
		return err
	}
	n, err := auth.Reseal(ctx, st, sealer)
	if err != nil {
		return fmt.Errorf("reseal: %w (the key file now lists the new key first and the old ones after; nothing in the database changed)", err)
	}
	only, _ := auth.NewSealer([]auth.MasterKey{fresh})
	if _, err := auth.OpenKeyring(ctx, st.Keys(), only, nil); err != nil {
		return fmt.Errorf("check with the new key alone: %w", err)
	}
	secrets, err := st.Keys().ListSecrets(ctx)
	if err != nil {
		return err
	}
	for _, s := range secrets {
		if _, err := only.Open(auth.SecretName(s.Name), s.Sealed); err != nil {
			return errors.Join(fmt.Errorf("check secret %s with the new key alone", s.Name), err)
		}
	}
	if !keepOld {
		if err := auth.WriteMasterKeys(c.MasterKeyFile, []auth.MasterKey{fresh}); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "master key %s now seals; %d values resealed; %s updated\n", fresh.ID, n, c.MasterKeyFile)
	return nil
}
