package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/config"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
)

// AdminMain is `nimbus admin`: maintenance done on the database directly,
// on the server's host.
func AdminMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	const usage = "Usage: nimbus admin <command> [flags]\n\n" +
		"  rotate-master-key  make a new master key, reseal every secret with it, and drop the old one (servers stopped)\n" +
		"  recover-owner      make a new owner token for an org whose owners are locked out (audited)\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "rotate-master-key":
		return rotateMasterKeyMain(ctx, args[1:], stdout, stderr, getenv)
	case "recover-owner":
		return recoverOwnerMain(ctx, args[1:], stdout, stderr, getenv)
	}
	fmt.Fprint(stderr, usage)
	return 2
}

func rotateMasterKeyMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
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
	if err := s.Parse(args, getenv, "config"); err != nil {
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

// recoverOwnerMain is `nimbus admin recover-owner`: the way back for an
// org whose owner tokens are all gone (expired, revoked before the last
// owner was protected, lost). It needs what only the server's operator
// has: the database. The new token is audited as owner.recovered.
func recoverOwnerMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var c ServerConfig
	s := config.NewSet("nimbus admin recover-owner", stderr)
	c.Register(s)
	org := s.String("org", "default", "name of the org")
	name := s.String("name", "recovered-owner", "name of the new owner token")
	expires := s.Duration("expires", 0, "lifetime of the token (0: never expires)")
	s.Usage = func() {
		fmt.Fprintf(stderr, `Usage: nimbus admin recover-owner [--data-dir DIR | --database URL] [--org NAME] [--name NAME] [--expires DURATION]

Makes a new owner token for the org and prints its secret (shown once) on
stdout. Run it on the server's host when nobody can act as the org's owner
any more; the servers may keep running. It writes the database directly, so
it needs the access only the server's operator has, and it is recorded in
the audit log (owner.recovered, by host:<the user who ran it>).

Flags (those of nimbus server; only the storage ones matter here):
`)
		s.PrintDefaults()
	}
	if err := s.Parse(args, getenv, "config"); err != nil {
		return 2
	}
	if err := c.Validate(); err != nil {
		fmt.Fprintf(stderr, "nimbus admin: %v\n", err)
		return 2
	}
	if *expires < 0 {
		fmt.Fprintf(stderr, "nimbus admin recover-owner: --expires: must not be negative\n")
		return 2
	}
	st, err := sqlstore.Open(ctx, c.Database)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus admin recover-owner: %v\n", err)
		return 1
	}
	defer st.Close()
	who := "host:" + first(getenv("SUDO_USER"), getenv("USER"), "unknown")
	tok, err := admin.New(admin.Options{Store: st}).RecoverOwner(ctx, *org, *name, who, *expires)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus admin recover-owner: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok.Secret)
	fmt.Fprintf(stderr, "Owner token %s (%s) of org %s created; the secret above is shown only once.\n", tok.ID, tok.Name, *org)
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
