package s3

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Config says where the bucket is and how to sign requests to it.
type Config struct {
	// Endpoint is the service URL, e.g. https://s3.eu-west-1.amazonaws.com.
	Endpoint string
	Region   string
	Bucket   string
	// PathStyle puts the bucket in the path (http://host/bucket/key) rather
	// than the host name (http://bucket.host/key).
	PathStyle       bool
	AccessKeyID     string
	SecretAccessKey string
}

// Client speaks the small part of the S3 API the cache needs. Object
// bodies are streamed in both directions, never held in memory.
type Client struct {
	base   *url.URL
	bucket string
	path   bool
	sign   *signer
	hc     *http.Client
	now    func() time.Time
}

// NewTransport returns the transport the client uses by default: bounded
// connection and header waits, so that an unreachable endpoint fails
// rather than hangs.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
	}
}

// NewClient returns a client sending requests through rt.
func NewClient(cfg Config, rt http.RoundTripper, now func() time.Time) (*Client, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("s3 endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("s3: bucket required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if now == nil {
		now = time.Now
	}
	return &Client{
		base:   u,
		bucket: cfg.Bucket,
		path:   cfg.PathStyle,
		sign:   &signer{accessKey: cfg.AccessKeyID, secretKey: cfg.SecretAccessKey, region: cfg.Region, service: "s3"},
		hc:     &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		now:    now,
	}, nil
}

// url returns the URL of key ("" for the bucket) with query q.
func (c *Client) url(key string, q url.Values) *url.URL {
	u := *c.base
	prefix := strings.TrimSuffix(u.Path, "/")
	if c.path {
		u.Path = prefix + "/" + c.bucket + "/" + key
	} else {
		u.Host = c.bucket + "." + u.Host
		u.Path = prefix + "/" + key
	}
	u.RawPath = uriEncode(u.Path, false)
	u.RawQuery = canonicalQuery(q)
	return &u
}

// request is one S3 call.
type request struct {
	method      string
	key         string
	query       url.Values
	header      http.Header
	body        io.Reader
	size        int64  // body length; -1 unknown (never sent so)
	payloadHash string // "": empty payload
}

func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	body := r.body
	if body == nil || r.size == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.url(r.key, r.query).String(), body)
	if err != nil {
		return nil, fmt.Errorf("s3 %s %s: %w", r.method, r.key, err)
	}
	if body != http.NoBody {
		req.ContentLength = r.size
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	ph := r.payloadHash
	if ph == "" {
		ph = emptyPayload
	}
	c.sign.sign(req, ph, c.now())
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("s3 %s %s: %w", r.method, r.key, ctx.Err())
		}
		if errors.Is(err, blobstore.ErrUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("s3 %s %s: %w (%v)", r.method, r.key, blobstore.ErrUnavailable, err)
	}
	if resp.StatusCode/100 != 2 && !(r.method == http.MethodGet && resp.StatusCode == http.StatusPartialContent) {
		defer resp.Body.Close()
		return nil, responseError(r.method, r.key, resp)
	}
	return resp, nil
}

// Error is an error answer of the S3 service.
type Error struct {
	Status  int
	Code    string
	Message string
	Op      string
}

func (e *Error) Error() string {
	return fmt.Sprintf("s3 %s: %d %s: %s", e.Op, e.Status, e.Code, e.Message)
}

// Unwrap maps the answer to the blob store's sentinels.
func (e *Error) Unwrap() error {
	switch {
	case e.Status == http.StatusNotFound:
		return blobstore.ErrNotFound
	case e.Status == http.StatusRequestedRangeNotSatisfiable,
		e.Code == "BadDigest", e.Code == "XAmzContentSHA256Mismatch", e.Code == "IncompleteBody", e.Code == "InvalidDigest":
		return blobstore.ErrInvalid
	case e.Status >= 500 || e.Status == http.StatusTooManyRequests:
		return blobstore.ErrUnavailable
	}
	return nil
}

// errorBody is S3's XML error document.
type errorBody struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// parseError reads an S3 error document (at most 64 KiB of it).
func parseError(r io.Reader) (errorBody, error) {
	var e errorBody
	err := xml.NewDecoder(io.LimitReader(r, 64<<10)).Decode(&e)
	return e, err
}

func responseError(method, key string, resp *http.Response) error {
	e := &Error{Status: resp.StatusCode, Op: method + " " + key}
	if method != http.MethodHead {
		if b, err := parseError(resp.Body); err == nil {
			e.Code, e.Message = b.Code, b.Message
		}
	}
	if e.Code == "" {
		e.Code = http.StatusText(resp.StatusCode)
	}
	return e
}

// CreateBucket creates the bucket; an existing bucket we own is not an error.
func (c *Client) CreateBucket(ctx context.Context) error {
	resp, err := c.do(ctx, request{method: http.MethodPut})
	var se *Error
	if errors.As(err, &se) && (se.Code == "BucketAlreadyOwnedByYou" || se.Code == "BucketAlreadyExists") {
		return nil
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Put stores size bytes from body under key. payloadHash is the hex
// SHA-256 of the body, which the service verifies, or "" if unknown. The
// object appears only if every byte arrives: a body that fails or ends
// early aborts the request.
func (c *Client) Put(ctx context.Context, key string, size int64, payloadHash string, body io.Reader) error {
	if payloadHash == "" {
		payloadHash = unsignedPayload
	}
	if size == 0 {
		payloadHash = emptyPayload
	}
	resp, err := c.do(ctx, request{method: http.MethodPut, key: key, body: body, size: size, payloadHash: payloadHash,
		header: http.Header{"Content-Type": {"application/octet-stream"}}})
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// Get opens key from offset, limit bytes (limit <= 0: to the end), and
// returns the object's total size.
func (c *Client) Get(ctx context.Context, key string, offset, limit int64) (io.ReadCloser, int64, error) {
	r := request{method: http.MethodGet, key: key}
	if offset > 0 || limit > 0 {
		rng := "bytes=" + strconv.FormatInt(offset, 10) + "-"
		if limit > 0 {
			rng += strconv.FormatInt(offset+limit-1, 10)
		}
		r.header = http.Header{"Range": {rng}}
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, 0, err
	}
	size := resp.ContentLength
	if resp.StatusCode == http.StatusPartialContent {
		size = -1
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if i := strings.LastIndexByte(cr, '/'); i >= 0 {
				if n, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
					size = n
				}
			}
		}
	}
	if size < 0 {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("s3 GET %s: no object size in the answer", key)
	}
	return resp.Body, size, nil
}

// Head returns the size of key.
func (c *Client) Head(ctx context.Context, key string) (int64, error) {
	resp, err := c.do(ctx, request{method: http.MethodHead, key: key})
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}

// Delete removes key; a missing key is not an error.
func (c *Client) Delete(ctx context.Context, key string) error {
	resp, err := c.do(ctx, request{method: http.MethodDelete, key: key})
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Object is one entry of a listing.
type Object struct {
	Key          string    `xml:"Key"`
	Size         int64     `xml:"Size"`
	LastModified time.Time `xml:"LastModified"`
}

// listResult is a ListObjectsV2 answer.
type listResult struct {
	Contents              []Object `xml:"Contents"`
	IsTruncated           bool     `xml:"IsTruncated"`
	NextContinuationToken string   `xml:"NextContinuationToken"`
}

// parseList reads a ListObjectsV2 answer (at most 64 MiB of it).
func parseList(r io.Reader) (listResult, error) {
	var l listResult
	if err := xml.NewDecoder(io.LimitReader(r, 64<<20)).Decode(&l); err != nil {
		return listResult{}, fmt.Errorf("s3 list: %w", err)
	}
	if l.IsTruncated && l.NextContinuationToken == "" {
		return listResult{}, fmt.Errorf("s3 list: truncated without a continuation token")
	}
	return l, nil
}

// List returns one page of the objects under prefix after token ("" for
// the first page) and the token of the next page ("" at the end).
func (c *Client) List(ctx context.Context, prefix, token string) ([]Object, string, error) {
	q := url.Values{"list-type": {"2"}, "prefix": {prefix}, "max-keys": {"1000"}}
	if token != "" {
		q.Set("continuation-token", token)
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, query: q})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	l, err := parseList(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if !l.IsTruncated {
		l.NextContinuationToken = ""
	}
	return l.Contents, l.NextContinuationToken, nil
}

// CreateMultipart starts a multipart upload of key and returns its id.
func (c *Client) CreateMultipart(ctx context.Context, key string) (string, error) {
	resp, err := c.do(ctx, request{method: http.MethodPost, key: key, query: url.Values{"uploads": {""}},
		header: http.Header{"Content-Type": {"application/octet-stream"}}})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r struct {
		UploadID string `xml:"UploadId"`
	}
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&r); err != nil || r.UploadID == "" {
		return "", fmt.Errorf("s3 create multipart upload %s: bad answer: %v", key, err)
	}
	return r.UploadID, nil
}

// UploadPart sends part n (from 1) of upload id and returns its ETag.
func (c *Client) UploadPart(ctx context.Context, key, id string, n int, size int64, body io.Reader) (string, error) {
	q := url.Values{"partNumber": {strconv.Itoa(n)}, "uploadId": {id}}
	resp, err := c.do(ctx, request{method: http.MethodPut, key: key, query: q, body: body, size: size, payloadHash: unsignedPayload})
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" {
		return "", fmt.Errorf("s3 upload part %d of %s: no ETag", n, key)
	}
	return etag, nil
}

// CompleteMultipart makes the object of upload id visible from its parts'
// ETags, in order.
func (c *Client) CompleteMultipart(ctx context.Context, key, id string, etags []string) error {
	type part struct {
		PartNumber int    `xml:"PartNumber"`
		ETag       string `xml:"ETag"`
	}
	doc := struct {
		XMLName xml.Name `xml:"CompleteMultipartUpload"`
		Parts   []part   `xml:"Part"`
	}{}
	for i, e := range etags {
		doc.Parts = append(doc.Parts, part{PartNumber: i + 1, ETag: e})
	}
	b, err := xml.Marshal(doc)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, request{method: http.MethodPost, key: key, query: url.Values{"uploadId": {id}},
		body: bytes.NewReader(b), size: int64(len(b)), payloadHash: hexSHA256(b),
		header: http.Header{"Content-Type": {"application/xml"}}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The service may answer 200 and still fail: the body says which.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("s3 complete multipart upload %s: %w", key, err)
	}
	if bytes.Contains(body, []byte("<Error>")) {
		e, _ := parseError(bytes.NewReader(body))
		return &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Message, Op: "complete multipart " + key}
	}
	return nil
}

// AbortMultipart discards upload id and its parts.
func (c *Client) AbortMultipart(ctx context.Context, key, id string) error {
	resp, err := c.do(ctx, request{method: http.MethodDelete, key: key, query: url.Values{"uploadId": {id}}})
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Upload is a multipart upload in progress.
type Upload struct {
	Key      string `xml:"Key"`
	UploadID string `xml:"UploadId"`
}

// ListMultipart returns the multipart uploads in progress under prefix
// (the first thousand).
func (c *Client) ListMultipart(ctx context.Context, prefix string) ([]Upload, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, query: url.Values{"uploads": {""}, "prefix": {prefix}}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Uploads []Upload `xml:"Upload"`
	}
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("s3 list multipart uploads: %w", err)
	}
	return r.Uploads, nil
}
