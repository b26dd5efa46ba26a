package github_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

func TestVerifySignatureGitHubTestVector(t *testing.T) {
	// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
	secret := []byte("It's a Secret to Everybody")
	body := []byte("Hello, World!")
	const header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if err := github.VerifySignature(body, header, [][]byte{secret}); err != nil {
		t.Fatalf("VerifySignature(test vector) = %v, want nil", err)
	}
	if got := githubtest.Sign(secret, body); got != header {
		t.Fatalf("githubtest.Sign(test vector) = %q, want %q", got, header)
	}
	// Upper-case hex is the same digest.
	if err := github.VerifySignature(body, "sha256="+strings.ToUpper(header[7:]), [][]byte{secret}); err != nil {
		t.Fatalf("VerifySignature(upper-case hex) = %v, want nil", err)
	}
	if err := github.VerifySignature([]byte("Hello, World?"), header, [][]byte{secret}); !errors.Is(err, github.ErrBadSignature) {
		t.Fatalf("VerifySignature(tampered body) = %v, want ErrBadSignature", err)
	}
}

func TestVerifySignatureRotation(t *testing.T) {
	body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{})
	oldSecret, newSecret, other := []byte("old-secret"), []byte("new-secret"), []byte("someone-else")
	both := [][]byte{newSecret, oldSecret}
	for _, tc := range []struct {
		name    string
		signer  []byte
		secrets [][]byte
		want    error
	}{
		{"old secret during rotation", oldSecret, both, nil},
		{"new secret during rotation", newSecret, both, nil},
		{"old secret after rotation", oldSecret, [][]byte{newSecret}, github.ErrBadSignature},
		{"unknown secret", other, both, github.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := github.VerifySignature(body, githubtest.Sign(tc.signer, body), tc.secrets)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("VerifySignature = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifySignatureMalformed(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"zen":"Keep it logically awesome."}`)
	good := githubtest.Sign(secret, body)
	hexDigest := good[len("sha256="):]
	for _, tc := range []struct {
		name   string
		header string
		want   error
	}{
		{"empty", "", github.ErrMissingSignature},
		{"prefix only", "sha256=", github.ErrMalformedSignature},
		{"sha1 header form", "sha1=" + hexDigest[:40], github.ErrMalformedSignature},
		{"no prefix", hexDigest, github.ErrMalformedSignature},
		{"upper-case prefix", "SHA256=" + hexDigest, github.ErrMalformedSignature},
		{"colon separator", "sha256:" + hexDigest, github.ErrMalformedSignature},
		{"one digit short", good[:len(good)-1], github.ErrMalformedSignature},
		{"one digit long", good + "0", github.ErrMalformedSignature},
		{"non-hex digit", good[:len(good)-1] + "g", github.ErrMalformedSignature},
		{"leading space", " " + good[:len(good)-1], github.ErrMalformedSignature},
		{"trailing space", good + " ", github.ErrMalformedSignature},
		{"two signatures", good + "," + good, github.ErrMalformedSignature},
		{"base64 digest", "sha256=dXNlIGhleCwgbm90IGJhc2U2NA==", github.ErrMalformedSignature},
		{"right length, wrong digest", "sha256=" + strings.Repeat("0", 64), github.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := github.VerifySignature(body, tc.header, [][]byte{secret}); !errors.Is(err, tc.want) {
				t.Fatalf("VerifySignature(%q) = %v, want %v", tc.header, err, tc.want)
			}
		})
	}
}

func TestVerifySignatureNeedsSecret(t *testing.T) {
	body := []byte("{}")
	// The HMAC of an empty key is one anybody can compute: refuse it.
	for name, secrets := range map[string][][]byte{
		"none":          nil,
		"empty":         {{}},
		"one empty of2": {[]byte("x"), nil},
	} {
		t.Run(name, func(t *testing.T) {
			if err := github.VerifySignature(body, githubtest.Sign(nil, body), secrets); !errors.Is(err, github.ErrNoSecret) {
				t.Fatalf("VerifySignature = %v, want ErrNoSecret", err)
			}
		})
	}
}

func FuzzVerifySignature(f *testing.F) {
	secret := []byte("It's a Secret to Everybody")
	f.Add([]byte("Hello, World!"), "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", secret)
	body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "in_progress"})
	f.Add(body, githubtest.Sign(secret, body), secret)
	f.Add(body, "sha1=757107ea0eb2509fc211221cce984b8a37570b6d", []byte("k"))
	f.Add([]byte{}, "sha256=", []byte{0})
	f.Fuzz(func(t *testing.T, body []byte, header string, secret []byte) {
		err := github.VerifySignature(body, header, [][]byte{secret})
		if len(secret) == 0 {
			if !errors.Is(err, github.ErrNoSecret) {
				t.Fatalf("empty secret: err = %v, want ErrNoSecret", err)
			}
			return
		}
		want := githubtest.Sign(secret, body)
		if err == nil && !strings.EqualFold(header, want) {
			t.Fatalf("header %q verified but the signature is %q", header, want)
		}
		if err != nil && header == want {
			t.Fatalf("correct header %q refused: %v", header, err)
		}
		if err := github.VerifySignature(body, want, [][]byte{[]byte("other"), secret}); err != nil {
			t.Fatalf("correct signature refused with a second secret present: %v", err)
		}
	})
}

func BenchmarkVerifySignature(b *testing.B) {
	body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{})
	secrets := [][]byte{[]byte("new-secret"), []byte("old-secret")}
	header := githubtest.Sign(secrets[1], body)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := github.VerifySignature(body, header, secrets); err != nil {
			b.Fatal(err)
		}
	}
}
