package githubtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// Values Deliver puts in the hook headers: a GitHub App's webhook.
const (
	DefaultHookID     = "469785313"
	DefaultTargetType = "integration"
	DefaultTargetID   = "123456"
)

// Sign returns the X-Hub-Signature-256 value GitHub sends for body signed
// with secret: "sha256=" and the hex HMAC-SHA256.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// DeliveryHeaders returns the headers GitHub sends with a delivery. With a
// nil secret there is no signature header, as from a hook without a secret.
func DeliveryHeaders(secret []byte, event, deliveryID string, body []byte) http.Header {
	h := http.Header{}
	h.Set("User-Agent", "GitHub-Hookshot/8a1c2d3")
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Delivery", deliveryID)
	h.Set("X-GitHub-Hook-ID", DefaultHookID)
	h.Set("X-GitHub-Hook-Installation-Target-Type", DefaultTargetType)
	h.Set("X-GitHub-Hook-Installation-Target-ID", DefaultTargetID)
	if secret != nil {
		h.Set("X-Hub-Signature-256", Sign(secret, body))
	}
	return h
}

// Deliver POSTs a webhook delivery to url the way GitHub does. A nil client
// means http.DefaultClient. The caller closes the response body.
func Deliver(ctx context.Context, client *http.Client, url string, secret []byte, event, deliveryID string, body []byte) (*http.Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = DeliveryHeaders(secret, event, deliveryID, body)
	return client.Do(req)
}
