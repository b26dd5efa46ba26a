package auth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

func TestSealer(t *testing.T) {
	old, cur := auth.NewMasterKey(), auth.NewMasterKey()
	s1, err := auth.NewSealer([]auth.MasterKey{old})
	if err != nil {
		t.Fatal(err)
	}
	sealed := s1.Seal("secret/a", []byte("hunter2"))
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("plaintext visible in sealed value")
	}
	got, err := s1.Open("secret/a", sealed)
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s1.Open("secret/b", sealed); !errors.Is(err, auth.ErrSealed) {
		t.Errorf("open under another name: %v", err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := s1.Open("secret/a", tampered); !errors.Is(err, auth.ErrSealed) {
		t.Errorf("open tampered: %v", err)
	}
	// Rotation: the new sealer opens old values and seals with the new key.
	s2, err := auth.NewSealer([]auth.MasterKey{cur, old})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Open("secret/a", sealed); err != nil || string(got) != "hunter2" {
		t.Errorf("rotated sealer cannot open old value: %v", err)
	}
	if kid, _ := auth.KeyID(s2.Seal("x", nil)); kid != cur.ID {
		t.Errorf("sealed with %s, want %s", kid, cur.ID)
	}
	s3, _ := auth.NewSealer([]auth.MasterKey{cur})
	if _, err := s3.Open("secret/a", sealed); !errors.Is(err, auth.ErrSealed) {
		t.Errorf("sealer without the old key opened an old value: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("nms1"), []byte("nms1\xffab"), []byte("xxxx\x01a")} {
		if _, err := s1.Open("n", bad); !errors.Is(err, auth.ErrSealed) {
			t.Errorf("Open(%q): %v", bad, err)
		}
	}
}

func TestMasterKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "master.key")
	keys := []auth.MasterKey{auth.NewMasterKey(), auth.NewMasterKey()}
	if err := auth.WriteMasterKeys(p, keys); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	got, err := auth.LoadMasterKeys(p)
	if err != nil || len(got) != 2 || got[0].ID != keys[0].ID || !bytes.Equal(got[1].Key, keys[1].Key) {
		t.Fatalf("load: %v %v", got, err)
	}
	os.WriteFile(p, []byte("k1 c2hvcnQ=\n"), 0o600)
	if _, err := auth.LoadMasterKeys(p); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Errorf("short key: %v", err)
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newRing(t *testing.T, s store.Store, c *clock) *auth.Keyring {
	ring, err := auth.OpenKeyring(context.Background(), s.Keys(), mustSealer(), c.now)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

func TestKeyringRotationAndRevocation(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, "sqlite")
	c := &clock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	sealer := mustSealer()
	ring, err := auth.OpenKeyring(ctx, s.Keys(), sealer, c.now)
	if err != nil {
		t.Fatal(err)
	}
	claims := auth.Claims{Kind: auth.KindAgent, Subject: "agt_1", Org: "org_1"}
	old, err := ring.Sign(claims, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ring.Verify(old); err != nil || got.Subject != "agt_1" || got.Org != "org_1" {
		t.Fatalf("verify: %+v %v", got, err)
	}
	oldKey := ring.Keys()[0].ID
	if _, err := ring.Rotate(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	fresh, _ := ring.Sign(claims, 24*time.Hour)
	// Within the overlap both verify.
	for _, tok := range []string{old, fresh} {
		if _, err := ring.Verify(tok); err != nil {
			t.Errorf("during overlap: %v", err)
		}
	}
	// After the overlap the old key's credentials are refused.
	c.t = c.t.Add(time.Hour)
	if _, err := ring.Verify(old); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("old key after overlap: %v", err)
	}
	if _, err := ring.Verify(fresh); err != nil {
		t.Errorf("fresh credential: %v", err)
	}
	// Another replica loading the keys verifies the same credentials, and
	// a keyring without the master key cannot load them at all.
	other, err := auth.OpenKeyring(ctx, s.Keys(), sealer, c.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(fresh); err != nil {
		t.Errorf("other replica: %v", err)
	}
	if _, err := auth.OpenKeyring(ctx, s.Keys(), mustSealer(), c.now); err == nil {
		t.Errorf("keyring opened with the wrong master key")
	}
	// Revoking a key takes effect immediately.
	c.t = c.t.Add(-time.Hour)
	if err := ring.Revoke(ctx, oldKey); err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Verify(old); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("revoked key still verifies: %v", err)
	}
	active := ""
	for _, k := range ring.Keys() {
		if k.Active {
			active = k.ID
		}
	}
	if err := ring.Revoke(ctx, active); err == nil {
		t.Errorf("revoking the active key succeeded")
	}
}

func TestKeyringRefusesForgeries(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	c := &clock{t: time.Now()}
	ring := newRing(t, s, c)
	tok, _ := ring.Sign(auth.Claims{Kind: auth.KindJob, Subject: "job_1", Org: "org_1", Scopes: []string{"cache.read"}}, time.Minute)
	parts := strings.Split(tok, ".")
	// Another org written into the claims without re-signing.
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.Replace(payload, []byte(`"org_1"`), []byte(`"org_2"`), 1)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	// One bit of the signature flipped (not its last characters replaced:
	// they may already be what replaces them).
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 1
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	otherRing := newRing(t, storetest.Open(t, "sqlite"), c)
	foreign, _ := otherRing.Sign(auth.Claims{Kind: auth.KindAgent, Subject: "a", Org: "o"}, time.Minute)
	for name, bad := range map[string]string{
		"none alg":      "eyJhbGciOiJub25lIiwia2lkIjoieCJ9." + parts[1] + ".",
		"bad signature": badSig,
		"forged claims": forged,
		"other keyring": foreign,
		"garbage":       "ey.a.b",
		"two parts":     parts[0] + "." + parts[1],
	} {
		if _, err := ring.Verify(bad); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: %v", name, err)
		}
	}
	c.t = c.t.Add(time.Minute)
	if _, err := ring.Verify(tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("expired credential: %v", err)
	}
}

func TestAuthenticator(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, "sqlite")
	c := &clock{t: time.Now().UTC()}
	ring := newRing(t, s, c)
	a := auth.NewAuthenticator(s, ring, c.now)
	s.Orgs().Create(ctx, store.Org{ID: "org_1", Name: "one", CreatedAt: c.t})
	secret, hash := auth.NewSecret(auth.APITokenPrefix)
	s.Tokens().CreateAPIToken(ctx, store.APIToken{ID: "tok_1", OrgID: "org_1", Name: "alice", Role: "developer", Hash: hash, CreatedAt: c.t})
	expSecret, expHash := auth.NewSecret(auth.APITokenPrefix)
	s.Tokens().CreateAPIToken(ctx, store.APIToken{ID: "tok_2", OrgID: "org_1", Name: "old", Role: "admin", Hash: expHash, CreatedAt: c.t, ExpiresAt: c.t})

	p, err := a.Authenticate(ctx, secret)
	if err != nil || p.Kind != auth.KindUser || p.Org != "org_1" || p.Role != auth.RoleDeveloper || p.Name != "alice" {
		t.Fatalf("api token: %+v %v", p, err)
	}
	if _, err := a.Authenticate(ctx, expSecret); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("expired token: %v", err)
	}
	s.Tokens().RevokeAPIToken(ctx, "org_1", "tok_1", c.t)
	// The answer is reused for under a second; then the revocation holds.
	c.t = c.t.Add(time.Second)
	if _, err := a.Authenticate(ctx, secret); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("revoked token: %v", err)
	}
	s.Agents().Create(ctx, store.Agent{ID: "agt_1", OrgID: "org_1", Name: "h1", CreatedAt: c.t})
	cred, _ := ring.Sign(auth.Claims{Kind: auth.KindAgent, Subject: "agt_1", Org: "org_1"}, time.Hour)
	if p, err := a.Authenticate(ctx, cred); err != nil || p.Kind != auth.KindAgent || p.ID != "agt_1" {
		t.Errorf("agent credential: %+v %v", p, err)
	}
	// An agent credential claiming another org is refused.
	liar, _ := ring.Sign(auth.Claims{Kind: auth.KindAgent, Subject: "agt_1", Org: "org_2"}, time.Hour)
	if _, err := a.Authenticate(ctx, liar); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("agent with a foreign org: %v", err)
	}
	// Disabling the agent revokes its credential at once.
	s.Agents().Disable(ctx, "org_1", "agt_1", c.t)
	if _, err := a.Authenticate(ctx, cred); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("disabled agent: %v", err)
	}
	for _, bad := range []string{"", "nmbu_", "Bearer x", strings.Repeat("a", 5000)} {
		if _, err := a.Authenticate(ctx, bad); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("Authenticate(%.20q): %v", bad, err)
		}
	}
}

// A master key rotation, rehearsed as an operator would: back up, rotate,
// reseal, drop the old key; then restore the backup with the old key file
// (the dry-run restore the threat model asks for).
func TestMasterKeyRotationAndRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "nimbus.db")
	keyPath := filepath.Join(dir, "master.key")
	old := auth.NewMasterKey()
	auth.WriteMasterKeys(keyPath, []auth.MasterKey{old})

	s := storetest.OpenPath(t, dbPath)
	sealer, _ := auth.NewSealer([]auth.MasterKey{old})
	c := &clock{t: time.Now()}
	ring, err := auth.OpenKeyring(ctx, s.Keys(), sealer, c.now)
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := ring.Sign(auth.Claims{Kind: auth.KindJob, Subject: "job_1", Org: "o"}, time.Hour)
	s.Keys().PutSecret(ctx, store.Secret{Name: "webhook", Sealed: sealer.Seal(auth.SecretName("webhook"), []byte("whsec")), UpdatedAt: c.t})
	backup := storetest.Backup(t, s, dbPath)
	oldKeyFile, _ := os.ReadFile(keyPath)

	// Rotate: the new key first, the old one still loaded to open.
	cur := auth.NewMasterKey()
	both, _ := auth.NewSealer([]auth.MasterKey{cur, old})
	n, err := auth.Reseal(ctx, s, both)
	if err != nil || n != 2 {
		t.Fatalf("reseal: %d %v", n, err)
	}
	// Drop the old key: everything still opens.
	only, _ := auth.NewSealer([]auth.MasterKey{cur})
	ring2, err := auth.OpenKeyring(ctx, s.Keys(), only, c.now)
	if err != nil {
		t.Fatalf("keyring after rotation: %v", err)
	}
	if _, err := ring2.Verify(cred); err != nil {
		t.Errorf("credential after master key rotation: %v", err)
	}
	sec, _ := s.Keys().GetSecret(ctx, "webhook")
	if got, err := only.Open(auth.SecretName("webhook"), sec.Sealed); err != nil || string(got) != "whsec" {
		t.Errorf("secret after rotation: %q %v", got, err)
	}
	// Restore the backup with the old key file.
	restored := storetest.OpenPath(t, backup)
	keys, _ := auth.LoadMasterKeys(writeTemp(t, oldKeyFile))
	oldSealer, _ := auth.NewSealer(keys)
	ring3, err := auth.OpenKeyring(ctx, restored.Keys(), oldSealer, c.now)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if _, err := ring3.Verify(cred); err != nil {
		t.Errorf("credential after restore: %v", err)
	}
	// And the restored backup does not open with only the new key.
	if _, err := auth.OpenKeyring(ctx, restored.Keys(), only, c.now); err == nil {
		t.Errorf("restored backup opened without its master key")
	}
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "k")
	os.WriteFile(p, b, 0o600)
	return p
}

func FuzzVerify(f *testing.F) {
	ring, err := auth.OpenKeyring(context.Background(), storetest.Open(f, "sqlite").Keys(), mustSealer(), nil)
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := ring.Sign(auth.Claims{Kind: auth.KindAgent, Subject: "a", Org: "o"}, time.Hour)
	f.Add(tok)
	f.Add("eyJhbGciOiJFZERTQSJ9.e30.")
	f.Add("...")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ring.Verify(s)
		if err == nil && s != tok {
			t.Fatalf("accepted a credential it did not sign: %q -> %+v", s, c)
		}
	})
}

func mustSealer() *auth.Sealer {
	s, _ := auth.NewSealer([]auth.MasterKey{auth.NewMasterKey()})
	return s
}
