package jobcred_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/cache/jobcred"
	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/store"
)

// TestGitHubSources asks the GitHub emulator where runs' code comes from,
// as the control plane asks GitHub: a workflow_job webhook does not say,
// and a fork's branch may be named like the default branch.
func TestGitHubSources(t *testing.T) {
	srv := githubtest.NewServer(t, githubtest.Config{})
	key := githubtest.SharedKey(t)
	srv.AddApp(githubtest.App{ID: 9, PublicKey: &key.PublicKey})
	srv.AddInstallation(githubtest.Installation{ID: 90, AppID: 9, Account: "octo-org", AccountType: "Organization"})
	app, err := github.NewApp(github.AppConfig{AppID: 9, PrivateKeyPEM: githubtest.PKCS1PEM(key), BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	const repo, repoID = "octo-org/app", int64(500)
	srv.AddWorkflowRun(githubtest.WorkflowRun{ID: 1, Repo: repo, RepoID: repoID, Event: "push", HeadBranch: "main"})
	srv.AddWorkflowRun(githubtest.WorkflowRun{ID: 2, Repo: repo, RepoID: repoID, Event: "pull_request", HeadBranch: "feature",
		PullRequests: []githubtest.PullRequest{{Number: 7, BaseRef: "rel", HeadRef: "feature", HeadOwner: "octo-org", HeadRepoID: repoID}}})
	// A fork whose branch is called main: its run names no pull request.
	srv.AddWorkflowRun(githubtest.WorkflowRun{ID: 3, Repo: repo, RepoID: repoID, Event: "pull_request", HeadBranch: "main",
		HeadRepoID: 666, HeadOwner: "mallory"})
	srv.AddPullRequest(repo, githubtest.PullRequest{Number: 9, BaseRepoID: repoID, BaseRef: "main", HeadRef: "main", HeadOwner: "mallory", HeadRepoID: 666})
	srv.AddWorkflowRun(githubtest.WorkflowRun{ID: 4, Repo: repo, RepoID: repoID, Event: "pull_request", HeadBranch: "gone",
		HeadRepoID: 667, HeadOwner: "eve"})
	srv.AddWorkflowRun(githubtest.WorkflowRun{ID: 5, Repo: repo, RepoID: 501, Event: "push", HeadBranch: "main"})

	g := &jobcred.GitHub{App: app}
	job := func(run int64) store.GitHubJob {
		return store.GitHubJob{RepoID: repoID, Repo: repo, InstallationID: 90, RunID: run, HeadBranch: "main", DefaultBranch: "main"}
	}
	main := "refs/heads/main"
	for _, tc := range []struct {
		run  int64
		want jobcred.Source
	}{
		{1, jobcred.Source{Ref: main, DefaultRef: main}},
		{2, jobcred.Source{Ref: "refs/pull/7/merge", BaseRef: "refs/heads/rel", DefaultRef: main}},
		{3, jobcred.Source{Ref: "refs/pull/9/merge", BaseRef: main, DefaultRef: main, Fork: true}},
	} {
		got, err := g.Find(context.Background(), job(tc.run))
		if err != nil {
			t.Errorf("run %d: %v", tc.run, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("run %d (-want +got):\n%s", tc.run, diff)
		}
	}
	for _, run := range []int64{
		4,   // a fork's run whose pull request cannot be found
		5,   // a run of another repository
		404, // no such run
	} {
		if src, err := g.Find(context.Background(), job(run)); err == nil {
			t.Errorf("run %d: %+v, want an error (an unknown source)", run, src)
		}
	}
	noApp := job(1)
	noApp.InstallationID = 0
	if _, err := g.Find(context.Background(), noApp); err == nil {
		t.Error("a job without an installation: no error")
	}
}
