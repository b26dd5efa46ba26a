package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// tagRecord is what a tag points at. Records live in the org's KindMeta
// namespace of the blob store, keyed by a hash of (repository, tag), so
// they share the cache's quota and eviction with everything else.
type tagRecord struct {
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
	// Checked is when the upstream last confirmed the tag (pull-through)
	// or when it was pushed (own repositories).
	Checked time.Time `json:"checked"`
}

type tagKey struct {
	org, repo, tag string
}

// tagStore reads and writes tag records, with an in-memory copy of the
// pulled-through ones (their freshness is the TTL's business anyway); an
// own repository's tags are always read from the store, where another
// replica may have pushed.
type tagStore struct {
	store blobstore.Store
	now   func() time.Time

	mu  sync.Mutex
	mem map[tagKey]tagRecord
	// lists serializes updates of a repository's tag list.
	lists sync.Map // string -> *sync.Mutex
}

// maxMemTags bounds the in-memory copies; past it they are dropped.
const maxMemTags = 100000

// maxTagListSize bounds a tag list record.
const maxTagListSize = 4 << 20

func newTagStore(s blobstore.Store, now func() time.Time) *tagStore {
	return &tagStore{store: s, now: now, mem: map[tagKey]tagRecord{}}
}

func tagRef(org, repoKey, tag string) blobstore.Ref {
	return blobstore.Ref{Org: org, Kind: blobstore.KindMeta, Digest: blobstore.Digest{Hash: keyHash("registry-tag", repoKey, tag), Size: -1}}
}

func listRef(org, repoKey string) blobstore.Ref {
	return blobstore.Ref{Org: org, Kind: blobstore.KindMeta, Digest: blobstore.Digest{Hash: keyHash("registry-tags", repoKey), Size: -1}}
}

// get returns a tag's record; ok is false when there is none.
func (t *tagStore) get(ctx context.Context, p repo, tag string) (tagRecord, bool, error) {
	k := tagKey{p.Org, p.key(), tag}
	if p.Up != nil {
		t.mu.Lock()
		rec, ok := t.mem[k]
		t.mu.Unlock()
		if ok {
			return rec, true, nil
		}
	}
	b, err := blobstore.GetBytes(ctx, t.store, tagRef(p.Org, p.key(), tag), 64<<10)
	if errors.Is(err, blobstore.ErrNotFound) {
		return tagRecord{}, false, nil
	}
	if err != nil {
		return tagRecord{}, false, err
	}
	var rec tagRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return tagRecord{}, false, fmt.Errorf("tag record of %s:%s: %w", p.Name, tag, err)
	}
	if p.Up != nil {
		t.remember(k, rec)
	}
	return rec, true, nil
}

// put writes a tag's record (durably) and, for an own repository, adds
// the tag to the repository's list.
func (t *tagStore) put(ctx context.Context, p repo, tag string, rec tagRecord) error {
	b, _ := json.Marshal(rec)
	ref := tagRef(p.Org, p.key(), tag)
	ref.Digest.Size = int64(len(b))
	if err := blobstore.PutBytes(ctx, t.store, ref, b); err != nil {
		return err
	}
	if p.Up != nil {
		t.remember(tagKey{p.Org, p.key(), tag}, rec)
		return nil
	}
	return t.addToList(ctx, p, tag)
}

// touch records that the upstream confirmed the tag now. The in-memory
// copy changes at once; the stored one too (so a restart does not
// revalidate everything), but its failure is not the request's.
func (t *tagStore) touch(ctx context.Context, p repo, tag string, rec tagRecord) tagRecord {
	rec.Checked = t.now()
	if err := t.put(ctx, p, tag, rec); err != nil {
		t.remember(tagKey{p.Org, p.key(), tag}, rec)
	}
	return rec
}

func (t *tagStore) remember(k tagKey, rec tagRecord) {
	t.mu.Lock()
	if len(t.mem) >= maxMemTags {
		clear(t.mem)
	}
	t.mem[k] = rec
	t.mu.Unlock()
}

// list returns an own repository's tags, sorted.
func (t *tagStore) list(ctx context.Context, p repo) ([]string, error) {
	b, err := blobstore.GetBytes(ctx, t.store, listRef(p.Org, p.key()), maxTagListSize)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var tags []string
	if err := json.Unmarshal(b, &tags); err != nil {
		return nil, fmt.Errorf("tag list of %s: %w", p.Name, err)
	}
	return tags, nil
}

func (t *tagStore) addToList(ctx context.Context, p repo, tag string) error {
	mu, _ := t.lists.LoadOrStore(p.Org+"\x00"+p.key(), &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	tags, err := t.list(ctx, p)
	if err != nil {
		return err
	}
	i, found := slices.BinarySearch(tags, tag)
	if found {
		return nil
	}
	tags = slices.Insert(tags, i, tag)
	b, _ := json.Marshal(tags)
	ref := listRef(p.Org, p.key())
	ref.Digest.Size = int64(len(b))
	return blobstore.PutBytes(ctx, t.store, ref, b)
}
