package jobcred

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/store"
)

// GitHub finds GitHub jobs' sources through the GitHub App: the workflow
// run says what triggered it and whether its code comes from a fork (a
// workflow_job webhook says neither), and for a pull request from a fork,
// whose run lists no pull request, the pulls API finds it by its head.
// Answers are kept for ten minutes per run.
type GitHub struct {
	App *github.App

	mu   sync.Mutex
	runs map[string]foundSource
}

type foundSource struct {
	src Source
	at  time.Time
}

const (
	sourceTTL        = 10 * time.Minute
	maxSourcesCached = 4096
)

// Find implements SourceFinder.
func (g *GitHub) Find(ctx context.Context, gh store.GitHubJob) (Source, error) {
	if gh.InstallationID <= 0 {
		return Source{}, errors.New("the job came through no GitHub App installation")
	}
	key := strconv.FormatInt(gh.RepoID, 10) + "/" + strconv.FormatInt(gh.RunID, 10)
	g.mu.Lock()
	f, ok := g.runs[key]
	g.mu.Unlock()
	if ok && time.Since(f.at) < sourceTTL {
		return f.src, nil
	}
	src, err := g.find(ctx, gh)
	if err != nil {
		return Source{}, err
	}
	g.mu.Lock()
	if g.runs == nil || len(g.runs) >= maxSourcesCached {
		g.runs = map[string]foundSource{}
	}
	g.runs[key] = foundSource{src: src, at: time.Now()}
	g.mu.Unlock()
	return src, nil
}

func (g *GitHub) find(ctx context.Context, gh store.GitHubJob) (Source, error) {
	run, err := g.App.WorkflowRun(ctx, gh.InstallationID, gh.Repo, gh.RunID)
	if err != nil {
		return Source{}, err
	}
	if run.RepositoryID != gh.RepoID {
		return Source{}, fmt.Errorf("workflow run %d belongs to repository %d, not %d", gh.RunID, run.RepositoryID, gh.RepoID)
	}
	src := Source{Fork: run.Fork(), DefaultRef: branchRef(gh.DefaultBranch)}
	switch run.Event {
	case "pull_request", "pull_request_target":
		pr, err := g.pullRequest(ctx, gh, run)
		if err != nil {
			return Source{}, err
		}
		src.Ref = "refs/pull/" + strconv.FormatInt(pr.Number, 10) + "/merge"
		src.BaseRef = branchRef(pr.BaseRef)
	default:
		if run.HeadBranch == "" {
			return Source{}, fmt.Errorf("workflow run %d (%s) names no branch", gh.RunID, run.Event)
		}
		src.Ref = branchRef(run.HeadBranch)
	}
	return src, nil
}

// pullRequest is the pull request a run is for.
func (g *GitHub) pullRequest(ctx context.Context, gh store.GitHubJob, run github.WorkflowRun) (github.PullRequest, error) {
	prs := run.PullRequests
	if len(prs) == 0 && run.HeadOwner != "" && run.HeadBranch != "" {
		var err error
		if prs, err = g.App.PullRequestsByHead(ctx, gh.InstallationID, gh.Repo, run.HeadOwner, run.HeadBranch); err != nil {
			return github.PullRequest{}, err
		}
	}
	// The run's head (branch, repository) names its pull request; among
	// several, the one whose head is still the run's commit.
	var found []github.PullRequest
	for _, p := range prs {
		if p.HeadRef != run.HeadBranch || (p.BaseRepoID != 0 && p.BaseRepoID != gh.RepoID) ||
			(p.HeadRepoID != 0 && p.HeadRepoID != run.HeadRepositoryID) {
			continue
		}
		if p.HeadSHA == run.HeadSHA {
			return p, nil
		}
		found = append(found, p)
	}
	if len(found) == 0 {
		return github.PullRequest{}, fmt.Errorf("workflow run %d: no open pull request of %s with head %s:%s", gh.RunID, gh.Repo, run.HeadOwner, run.HeadBranch)
	}
	return found[0], nil
}
