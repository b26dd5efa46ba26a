package github

import (
	"errors"
	"strings"
	"testing"
)

const forkRun = `{"id": 30433642, "event": "pull_request", "head_branch": "main", "head_sha": "acb5820ced9479c074f688cc328bf03f341a511d",
 "repository": {"id": 1296269, "full_name": "octo-org/octo-repo", "owner": {"login": "octo-org"}},
 "head_repository": {"id": 99, "full_name": "mallory/octo-repo", "owner": {"login": "mallory"}},
 "pull_requests": [], "status": "queued"}`

const samePRRun = `{"id": 5, "event": "pull_request", "head_branch": "feature/x", "head_sha": "acb5820ced9479c074f688cc328bf03f341a511d",
 "repository": {"id": 7}, "head_repository": {"id": 7, "owner": {"login": "octo-org"}},
 "pull_requests": [{"number": 12, "url": "u", "id": 3, "head": {"ref": "feature/x", "sha": "acb5820ced9479c074f688cc328bf03f341a511d", "repo": {"id": 7}},
   "base": {"ref": "release/1", "sha": "acb5820ced9479c074f688cc328bf03f341a511d", "repo": {"id": 7}}}]}`

func TestParseWorkflowRun(t *testing.T) {
	r, err := ParseWorkflowRun([]byte(forkRun))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Fork() || r.Event != "pull_request" || r.HeadBranch != "main" || r.HeadOwner != "mallory" || len(r.PullRequests) != 0 {
		t.Errorf("fork run: %+v", r)
	}
	r, err = ParseWorkflowRun([]byte(samePRRun))
	if err != nil {
		t.Fatal(err)
	}
	if r.Fork() || len(r.PullRequests) != 1 || r.PullRequests[0].Number != 12 || r.PullRequests[0].BaseRef != "release/1" {
		t.Errorf("same-repository pull request run: %+v", r)
	}
	for _, bad := range []string{
		`{}`, `[]`, `{"id": 1}`,
		strings.Replace(forkRun, `"event": "pull_request"`, `"event": "Pull Request"`, 1),
		strings.Replace(forkRun, `"id": 99`, `"id": -1`, 1),
		strings.Replace(samePRRun, `"ref": "release/1"`, `"ref": "../x"`, 1),
		strings.Replace(samePRRun, `"number": 12`, `"number": 0`, 1),
	} {
		if _, err := ParseWorkflowRun([]byte(bad)); !errors.Is(err, ErrInvalidResponse) {
			t.Errorf("ParseWorkflowRun(%.60q) = %v, want ErrInvalidResponse", bad, err)
		}
	}
	// A run without a head repository is counted as a fork.
	r, err = ParseWorkflowRun([]byte(`{"id": 1, "event": "push", "head_sha": "acb5820ced9479c074f688cc328bf03f341a511d", "repository": {"id": 2}}`))
	if err != nil || !r.Fork() {
		t.Errorf("run without head repository: %+v %v", r, err)
	}
}

// FuzzParseWorkflowRun: any response parses into a run whose fields hold
// what Nimbus relies on, or is refused with ErrInvalidResponse.
func FuzzParseWorkflowRun(f *testing.F) {
	f.Add([]byte(forkRun))
	f.Add([]byte(samePRRun))
	f.Add([]byte(`{"id": 1, "event": "push", "head_sha": "acb5820ced9479c074f688cc328bf03f341a511d", "repository": {"id": 2}, "head_repository": null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseWorkflowRun(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("error %v is not ErrInvalidResponse", err)
			}
			return
		}
		if r.ID <= 0 || r.RepositoryID <= 0 || !validKeyword(r.Event) || !validSHA(r.HeadSHA) || r.HeadRepositoryID < 0 {
			t.Fatalf("accepted %+v", r)
		}
		for _, p := range r.PullRequests {
			if p.Number <= 0 || !validBranch(p.BaseRef) || !validBranch(p.HeadRef) {
				t.Fatalf("accepted pull request %+v", p)
			}
		}
	})
}

// FuzzParsePullRequests: the same for the pulls API's list.
func FuzzParsePullRequests(f *testing.F) {
	f.Add([]byte(`[{"number": 3, "head": {"ref": "main", "sha": "acb5820ced9479c074f688cc328bf03f341a511d", "repo": {"id": 9}}, "base": {"ref": "main", "repo": {"id": 1}}}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"number": 3, "head": {"ref": "-x"}, "base": {"ref": "main"}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		prs, err := ParsePullRequests(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("error %v is not ErrInvalidResponse", err)
			}
			return
		}
		for _, p := range prs {
			if p.Number <= 0 || !validBranch(p.BaseRef) || !validBranch(p.HeadRef) || p.BaseRepoID < 0 || p.HeadRepoID < 0 {
				t.Fatalf("accepted pull request %+v", p)
			}
		}
	})
}
