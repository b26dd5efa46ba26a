package actionscache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// signer makes and checks the signed URLs through which archives are
// uploaded (v2) and downloaded (v1 and v2): the client sends no token there.
type signer struct{ key []byte }

func (s signer) sign(kind, id string, exp int64) string {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "%s\x00%s\x00%d", kind, id, exp)
	return hex.EncodeToString(m.Sum(nil))
}

// query returns "exp=…&sig=…" for kind and id, valid for ttl.
func (s signer) query(kind, id string, now time.Time, ttl time.Duration) string {
	exp := now.Add(ttl).Unix()
	return "exp=" + strconv.FormatInt(exp, 10) + "&sig=" + s.sign(kind, id, exp)
}

func (s signer) check(kind, id, expS, sig string, now time.Time) bool {
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil || now.Unix() > exp {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(s.sign(kind, id, exp)))
}
