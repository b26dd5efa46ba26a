package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ErrInvalidResponse means a GitHub API response lacks, or has a wrong
// value in, a field Nimbus needs.
var ErrInvalidResponse = errors.New("invalid github api response")

func responseErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidResponse, field, fmt.Sprintf(format, args...))
}

// WorkflowRun is what Nimbus reads of a workflow run
// (GET /repos/{owner}/{repo}/actions/runs/{run_id}): where the code of its
// jobs comes from. A workflow_job webhook does not say; the build cache
// decides from this how far a job is trusted.
type WorkflowRun struct {
	ID int64
	// Event is what triggered the run: push, pull_request,
	// pull_request_target, merge_group, schedule, workflow_dispatch, …
	Event      string
	HeadBranch string // may be empty
	HeadSHA    string
	// RepositoryID is the repository the run belongs to. HeadRepositoryID
	// is the one its code comes from: another repository for a pull
	// request from a fork; 0 when GitHub does not say.
	RepositoryID     int64
	HeadRepositoryID int64
	// HeadOwner is the login of HeadRepositoryID's owner ("" when
	// unknown).
	HeadOwner string
	// PullRequests are the run's pull requests. GitHub lists only those
	// whose head is in the run's own repository: none for a pull request
	// from a fork (see PullRequestsByHead).
	PullRequests []PullRequest
}

// PullRequest is a pull request as a workflow run or the pulls API
// describe it.
type PullRequest struct {
	Number     int64
	BaseRef    string // the base branch's name
	BaseRepoID int64
	HeadRef    string
	HeadRepoID int64
	HeadSHA    string // "" when not given
}

// Fork reports whether the run's code comes from another repository than
// the run's own. Unknown (no head repository) counts as a fork.
func (r WorkflowRun) Fork() bool {
	return r.HeadRepositoryID == 0 || r.HeadRepositoryID != r.RepositoryID
}

type wireRepoRef struct {
	ID    *int64 `json:"id"`
	Owner *struct {
		Login *string `json:"login"`
	} `json:"owner"`
}

type wirePullRef struct {
	Ref  *string      `json:"ref"`
	SHA  *string      `json:"sha"`
	Repo *wireRepoRef `json:"repo"`
}

type wirePull struct {
	Number *int64       `json:"number"`
	Base   *wirePullRef `json:"base"`
	Head   *wirePullRef `json:"head"`
}

// maxPullRequests bounds the pull requests read from one response.
const maxPullRequests = 100

// ParseWorkflowRun decodes and validates a workflow run. Errors wrap
// ErrInvalidResponse and name the field.
func ParseWorkflowRun(body []byte) (WorkflowRun, error) {
	var w struct {
		ID             *int64       `json:"id"`
		Event          *string      `json:"event"`
		HeadBranch     *string      `json:"head_branch"`
		HeadSHA        *string      `json:"head_sha"`
		Repository     *wireRepoRef `json:"repository"`
		HeadRepository *wireRepoRef `json:"head_repository"`
		PullRequests   []wirePull   `json:"pull_requests"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return WorkflowRun{}, fmt.Errorf("%w: workflow run: %v", ErrInvalidResponse, err)
	}
	var r WorkflowRun
	switch {
	case w.ID == nil || *w.ID <= 0:
		return r, responseErr("id", "is missing or not positive")
	case w.Event == nil || !validKeyword(*w.Event):
		return r, responseErr("event", "is missing or not an event name")
	case w.HeadSHA == nil || !validSHA(*w.HeadSHA):
		return r, responseErr("head_sha", "is missing or not an object id")
	case w.HeadBranch != nil && !validText(*w.HeadBranch, maxTextLen):
		return r, responseErr("head_branch", "is longer than %d bytes or has control characters", maxTextLen)
	case w.Repository == nil || w.Repository.ID == nil || *w.Repository.ID <= 0:
		return r, responseErr("repository.id", "is missing or not positive")
	case len(w.PullRequests) > maxPullRequests:
		return r, responseErr("pull_requests", "has %d entries, at most %d", len(w.PullRequests), maxPullRequests)
	}
	r = WorkflowRun{ID: *w.ID, Event: *w.Event, HeadBranch: deref(w.HeadBranch), HeadSHA: *w.HeadSHA, RepositoryID: *w.Repository.ID}
	if h := w.HeadRepository; h != nil {
		if h.ID == nil || *h.ID <= 0 {
			return WorkflowRun{}, responseErr("head_repository.id", "is missing or not positive")
		}
		r.HeadRepositoryID = *h.ID
		if h.Owner != nil && h.Owner.Login != nil {
			if !validPathName(*h.Owner.Login, maxLoginLen) {
				return WorkflowRun{}, responseErr("head_repository.owner.login", "is not a valid login")
			}
			r.HeadOwner = *h.Owner.Login
		}
	}
	for i, p := range w.PullRequests {
		pr, err := p.pull(fmt.Sprintf("pull_requests[%d]", i))
		if err != nil {
			return WorkflowRun{}, err
		}
		r.PullRequests = append(r.PullRequests, pr)
	}
	return r, nil
}

func (p wirePull) pull(field string) (PullRequest, error) {
	ref := func(side string, x *wirePullRef) (string, int64, string, error) {
		switch {
		case x == nil || x.Ref == nil:
			return "", 0, "", responseErr(field+"."+side+".ref", "is missing")
		case !validBranch(*x.Ref):
			return "", 0, "", responseErr(field+"."+side+".ref", "is not a branch name")
		case x.SHA != nil && *x.SHA != "" && !validSHA(*x.SHA):
			return "", 0, "", responseErr(field+"."+side+".sha", "is not an object id")
		}
		var id int64
		if x.Repo != nil && x.Repo.ID != nil {
			if id = *x.Repo.ID; id <= 0 {
				return "", 0, "", responseErr(field+"."+side+".repo.id", "is not positive")
			}
		}
		return *x.Ref, id, deref(x.SHA), nil
	}
	if p.Number == nil || *p.Number <= 0 {
		return PullRequest{}, responseErr(field+".number", "is missing or not positive")
	}
	baseRef, baseRepo, _, err := ref("base", p.Base)
	if err != nil {
		return PullRequest{}, err
	}
	headRef, headRepo, headSHA, err := ref("head", p.Head)
	if err != nil {
		return PullRequest{}, err
	}
	return PullRequest{Number: *p.Number, BaseRef: baseRef, BaseRepoID: baseRepo, HeadRef: headRef, HeadRepoID: headRepo, HeadSHA: headSHA}, nil
}

// validBranch reports whether s can be a branch name as GitHub reports it:
// text without control characters, no "..", not starting with "-" or "/".
func validBranch(s string) bool {
	return s != "" && validText(s, maxTextLen) && !strings.Contains(s, "..") && !strings.HasPrefix(s, "-") &&
		!strings.HasPrefix(s, "/") && !strings.ContainsAny(s, " ~^:?*[\\")
}

// ParsePullRequests decodes and validates a list of pull requests (GET
// /repos/{owner}/{repo}/pulls).
func ParsePullRequests(body []byte) ([]PullRequest, error) {
	var w []wirePull
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w: pull requests: %v", ErrInvalidResponse, err)
	}
	if len(w) > maxPullRequests {
		return nil, responseErr("(top level)", "has %d pull requests, at most %d", len(w), maxPullRequests)
	}
	out := make([]PullRequest, 0, len(w))
	for i, p := range w {
		pr, err := p.pull(fmt.Sprintf("[%d]", i))
		if err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, nil
}

// validRepo reports whether repo is "owner/name".
func validRepo(repo string) bool {
	owner, name, ok := strings.Cut(repo, "/")
	return ok && validPathName(owner, maxLoginLen) && validPathName(name, maxRepoNameLen)
}

// WorkflowRun reads a run of repo ("owner/name") through the installation.
func (a *App) WorkflowRun(ctx context.Context, installationID int64, repo string, runID int64) (WorkflowRun, error) {
	if installationID <= 0 || runID <= 0 || !validRepo(repo) {
		return WorkflowRun{}, fmt.Errorf("workflow run %s/%d: bad installation, repository or run id", truncate(repo, 200), runID)
	}
	var raw json.RawMessage
	p := "/repos/" + repo + "/actions/runs/" + strconv.FormatInt(runID, 10)
	if err := a.installationDo(ctx, installationID, http.MethodGet, p, nil, http.StatusOK, &raw); err != nil {
		return WorkflowRun{}, fmt.Errorf("workflow run %s/%d: %w", repo, runID, err)
	}
	r, err := ParseWorkflowRun(raw)
	if err != nil {
		return WorkflowRun{}, fmt.Errorf("workflow run %s/%d: %w", repo, runID, err)
	}
	if r.ID != runID {
		return WorkflowRun{}, fmt.Errorf("workflow run %s/%d: %w", repo, runID, responseErr("id", "is %d", r.ID))
	}
	return r, nil
}

// PullRequestsByHead lists the open pull requests of repo whose head is
// branch of owner's repository (GET /repos/{owner}/{repo}/pulls?head=…):
// how the pull request of a run from a fork is found.
func (a *App) PullRequestsByHead(ctx context.Context, installationID int64, repo, owner, branch string) ([]PullRequest, error) {
	if installationID <= 0 || !validRepo(repo) || !validPathName(owner, maxLoginLen) || !validBranch(branch) {
		return nil, fmt.Errorf("pull requests of %s: bad installation, repository or head", truncate(repo, 200))
	}
	q := url.Values{"head": {owner + ":" + branch}, "state": {"open"}, "per_page": {"20"}}
	var raw json.RawMessage
	p := "/repos/" + repo + "/pulls?" + q.Encode()
	if err := a.installationDo(ctx, installationID, http.MethodGet, p, nil, http.StatusOK, &raw); err != nil {
		return nil, fmt.Errorf("pull requests of %s: %w", repo, err)
	}
	prs, err := ParsePullRequests(raw)
	if err != nil {
		return nil, fmt.Errorf("pull requests of %s: %w", repo, err)
	}
	return prs, nil
}
