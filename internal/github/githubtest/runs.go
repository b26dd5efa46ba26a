package githubtest

import (
	"net/http"
	"strconv"
	"strings"
)

// WorkflowRun is a workflow run the emulator serves
// (GET /repos/{owner}/{repo}/actions/runs/{run_id}).
type WorkflowRun struct {
	ID           int64
	Repo         string // "owner/name"
	RepoID       int64
	Event        string // "push" by default
	HeadBranch   string
	HeadSHA      string // a fixed SHA by default
	HeadRepoID   int64  // RepoID by default (not a fork)
	HeadOwner    string // the owner of Repo by default
	PullRequests []PullRequest
}

// PullRequest is a pull request the emulator lists (GET
// /repos/{owner}/{repo}/pulls?head=owner:branch), and a run's.
type PullRequest struct {
	Number     int64
	BaseRepoID int64 // the run's repository, for a run's pull requests
	BaseRef    string
	HeadRef    string
	HeadOwner  string // the head repository's owner
	HeadRepoID int64
	HeadSHA    string
}

const defaultSHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"

// AddWorkflowRun makes the emulator serve run. A run of a pull request
// from a fork lists no pull requests, as on GitHub: add the pull request
// with AddPullRequest so that it can be found by its head.
func (s *Server) AddWorkflowRun(run WorkflowRun) {
	if run.Event == "" {
		run.Event = "push"
	}
	if run.HeadSHA == "" {
		run.HeadSHA = defaultSHA
	}
	if run.HeadRepoID == 0 {
		run.HeadRepoID = run.RepoID
	}
	if run.HeadOwner == "" {
		run.HeadOwner, _, _ = strings.Cut(run.Repo, "/")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs == nil {
		s.runs = map[int64]WorkflowRun{}
	}
	s.runs[run.ID] = run
}

// AddPullRequest adds an open pull request to repo ("owner/name"); set
// its BaseRepoID to the repository's id.
func (s *Server) AddPullRequest(repo string, pr PullRequest) {
	if pr.HeadSHA == "" {
		pr.HeadSHA = defaultSHA
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pulls == nil {
		s.pulls = map[string][]PullRequest{}
	}
	key := strings.ToLower(repo)
	s.pulls[key] = append(s.pulls[key], pr)
}

func (s *Server) pullJSON(repoID int64, p PullRequest) map[string]any {
	if p.BaseRepoID != 0 {
		repoID = p.BaseRepoID
	}
	return map[string]any{
		"number": p.Number,
		"base":   map[string]any{"ref": p.BaseRef, "sha": defaultSHA, "repo": map[string]any{"id": repoID}},
		"head": map[string]any{"ref": p.HeadRef, "sha": p.HeadSHA,
			"repo": map[string]any{"id": p.HeadRepoID, "owner": map[string]any{"login": p.HeadOwner}}},
	}
}

func (s *Server) getWorkflowRun(w http.ResponseWriter, r *http.Request) {
	_, _, repo, ok := s.authInstallation(w, r)
	if !ok {
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("run_id"), 10, 64)
	s.mu.Lock()
	run, found := s.runs[id]
	s.mu.Unlock()
	if !found || !strings.EqualFold(run.Repo, repo) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	prs := []any{}
	for _, p := range run.PullRequests {
		prs = append(prs, s.pullJSON(run.RepoID, p))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": run.ID, "event": run.Event, "head_branch": run.HeadBranch, "head_sha": run.HeadSHA, "status": "queued",
		"repository":      map[string]any{"id": run.RepoID, "full_name": run.Repo},
		"head_repository": map[string]any{"id": run.HeadRepoID, "owner": map[string]any{"login": run.HeadOwner}},
		"pull_requests":   prs,
	})
}

func (s *Server) listPulls(w http.ResponseWriter, r *http.Request) {
	_, _, repo, ok := s.authInstallation(w, r)
	if !ok {
		return
	}
	owner, branch, _ := strings.Cut(r.URL.Query().Get("head"), ":")
	s.mu.Lock()
	out := []any{}
	for _, p := range s.pulls[strings.ToLower(repo)] {
		if (owner == "" || strings.EqualFold(p.HeadOwner, owner)) && (branch == "" || p.HeadRef == branch) {
			out = append(out, s.pullJSON(0, p))
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}
