package s3

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Payload hashes for x-amz-content-sha256.
const (
	unsignedPayload = "UNSIGNED-PAYLOAD"
	emptyPayload    = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// signer signs requests with AWS Signature Version 4 (header form).
type signer struct {
	accessKey, secretKey string
	region, service      string

	mu      sync.Mutex
	keyDate string // yyyymmdd of key
	key     []byte // the derived signing key of keyDate
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// signingKey derives (and caches for the day) the key for date.
func (s *signer) signingKey(date string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keyDate != date {
		k := hmacSHA256([]byte("AWS4"+s.secretKey), date)
		k = hmacSHA256(k, s.region)
		k = hmacSHA256(k, s.service)
		s.key = hmacSHA256(k, "aws4_request")
		s.keyDate = date
	}
	return s.key
}

// sign adds X-Amz-Date, X-Amz-Content-Sha256 (payloadHash) and
// Authorization to req. The signed headers are host, every x-amz-* header
// and Content-Type and Content-MD5 when present.
func (s *signer) sign(req *http.Request, payloadHash string, now time.Time) {
	t := now.UTC()
	amzDate := t.Format("20060102T150405Z")
	date := amzDate[:8]
	req.Header.Set("X-Amz-Date", amzDate)
	if s.service == "s3" {
		req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	}

	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	type kv struct{ k, v string }
	hs := []kv{{"host", host}}
	for k, vs := range req.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") || lk == "content-type" || lk == "content-md5" {
			hs = append(hs, kv{lk, strings.Join(trimAll(vs), ",")})
		}
	}
	slices.SortFunc(hs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	var canonHeaders strings.Builder
	names := make([]string, len(hs))
	for i, h := range hs {
		canonHeaders.WriteString(h.k + ":" + h.v + "\n")
		names[i] = h.k
	}
	signed := strings.Join(names, ";")

	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canon := strings.Join([]string{
		req.Method,
		path,
		canonicalQuery(req.URL.Query()),
		canonHeaders.String(),
		signed,
		payloadHash,
	}, "\n")
	sum := sha256.Sum256([]byte(canon))
	scope := date + "/" + s.region + "/" + s.service + "/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	sig := hex.EncodeToString(hmacSHA256(s.signingKey(date), toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+s.accessKey+"/"+scope+", SignedHeaders="+signed+", Signature="+sig)
}

func trimAll(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return out
}

// canonicalQuery encodes q sorted by key then value, every byte but the
// unreserved ones percent-encoded.
func canonicalQuery(q url.Values) string {
	type kv struct{ k, v string }
	var all []kv
	for k, vs := range q {
		for _, v := range vs {
			all = append(all, kv{uriEncode(k, true), uriEncode(v, true)})
		}
	}
	slices.SortFunc(all, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	parts := make([]string, len(all))
	for i, p := range all {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// uriEncode percent-encodes s as SigV4 wants: A-Z a-z 0-9 - _ . ~ stay,
// '/' stays unless encodeSlash, everything else becomes %XX (upper case).
func uriEncode(s string, encodeSlash bool) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&15])
		}
	}
	return b.String()
}
