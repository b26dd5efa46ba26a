package access

// Action is what a request does to the cache, as the policy names it
// (internal/policy/authz.rego). Every gRPC method and HTTP route of the
// cache declares one in the cache's route table; the edge authorizes it
// before any handler runs.
type Action string

// Actions the policy decides.
const (
	// Read: look blobs, action results and Actions cache entries up.
	Read Action = "cache.read"
	// Write: store CAS blobs and save Actions cache entries (neither can
	// poison anything: CAS content is checked against its digest, and an
	// Actions cache entry is visible only to its own ref's scope and the
	// refs that read it).
	Write Action = "cache.write"
	// WriteAC: store Bazel action results, which map an action to outputs
	// that every build of the org then trusts.
	WriteAC Action = "cache.write_ac"
)

// Actions the policy does not decide.
const (
	// Public needs no credential: it serves nothing of any org (health
	// checks, answers to requests that match no route).
	Public Action = "public"
	// Signed carries its own authorization: a URL the cache signed for one
	// blob and one org, which the handler checks.
	Signed Action = "signed"
)

// Decided reports whether the policy decides a: the caller must present a
// credential the policy allows a for.
func (a Action) Decided() bool { return a != Public && a != Signed }
