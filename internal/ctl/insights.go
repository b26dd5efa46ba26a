package ctl

import (
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

func insightsCommand() command {
	return command{
		name: "insights",
		help: "Report the org's finished jobs: queue time (webhook or submission → start), run time and failure rate\nper repository, workflow, job name and labels, and flaky jobs (the same job on the same commit that\nfailed and passed) with the lines their failed run ended with.",
		flags: func(fs *flag.FlagSet) {
			fs.String("repo", "", "only jobs of this repository (owner/name)")
			fs.String("since", "7d", "jobs created from this time (RFC 3339) or this long ago (7d, 36h); at most 92 days before --until")
			fs.String("until", "", "up to this time or this long ago (default now)")
			fs.Int("jobs", 0, "count at most this many finished jobs, newest first (1-10000; default 2000)")
			fs.Int("lines", 10, "failing lines shown per flaky job (0-50)")
			fs.Bool("by-day", false, "also print each group's jobs and failures day by day")
		},
		run: func(e *env, g *globals, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usagef("insights takes no arguments")
			}
			lines := int(flagInt(fs, "lines"))
			if lines < 0 || lines > 50 {
				return usagef("--lines: 0-50")
			}
			if lines == 0 {
				lines = -1
			}
			jobs := int(flagInt(fs, "jobs"))
			if jobs < 0 || jobs > 10000 {
				return usagef("--jobs: 1-10000")
			}
			c, err := g.client(e)
			if err != nil {
				return err
			}
			res, err := c.Insights(e.ctx, apiclient.InsightsQuery{Repo: flagString(fs, "repo"), Since: flagString(fs, "since"),
				Until: flagString(fs, "until"), Jobs: jobs, Lines: lines})
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(e.stdout, res)
			}
			printInsights(e, res, flagString(fs, "by-day") == "true")
			return nil
		},
	}
}

func printInsights(e *env, res apiv1.Insights, byDay bool) {
	what := "jobs"
	if res.Repo != "" {
		what = res.Repo + "'s jobs"
	}
	fmt.Fprintf(e.stdout, "%d of the org's %s created %s – %s finished", res.Jobs, what,
		res.Since.Local().Format("2006-01-02 15:04"), res.Until.Local().Format("2006-01-02 15:04"))
	if res.Capped {
		fmt.Fprint(e.stdout, " (a bound was reached: the newest only)")
	}
	fmt.Fprintln(e.stdout, ".")
	if len(res.Groups) == 0 {
		return
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tWORKFLOW\tJOB\tLABELS\tJOBS\tQUEUE P50\tQUEUE P90\tRUN P50\tRUN P90\tFAILED")
	for _, gr := range res.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", dash(gr.Repo), dash(gr.Workflow), dash(gr.Name), dash(gr.Labels), gr.Jobs,
			seconds(gr.QueueP50), seconds(gr.QueueP90), seconds(gr.RunP50), seconds(gr.RunP90), failed(gr.Failed, gr.Succeeded))
	}
	tw.Flush()
	if byDay {
		fmt.Fprintln(e.stdout)
		tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DAY (UTC)\tREPOSITORY\tWORKFLOW\tJOB\tLABELS\tJOBS\tFAILED")
		for _, gr := range res.Groups {
			for _, d := range gr.Days {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Day, dash(gr.Repo), dash(gr.Workflow), dash(gr.Name), dash(gr.Labels), d.Jobs, failed(d.Failed, d.Succeeded))
			}
		}
		tw.Flush()
	}
	if len(res.Flaky) == 0 {
		fmt.Fprintln(e.stdout, "\nNo flaky jobs.")
		return
	}
	fmt.Fprintln(e.stdout, "\nFlaky jobs (failed and passed on the same commit):")
	for _, f := range res.Flaky {
		if f.ExpiredLease {
			fmt.Fprintf(e.stdout, "  %s: passed after %d expired lease(s) (job %s)\n", f.Name, f.Failed, f.PassedJob)
			continue
		}
		fmt.Fprintf(e.stdout, "  %s · %s · %s @ %s: failed %d, passed %d (failed %s, passed %s)\n",
			f.Repo, f.Workflow, f.Name, shortSHA(f.HeadSHA), f.Failed, f.Succeeded, f.FailedJob, f.PassedJob)
		for _, l := range f.Lines {
			fmt.Fprintf(e.stdout, "      %s:%d  %s\n", l.Job, l.Line, StripANSI(l.Text))
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d == 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func failed(f, s int) string {
	if f+s == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%% (%d/%d)", 100*float64(f)/float64(f+s), f, f+s)
}

func shortSHA(s string) string {
	return s[:min(len(s), 7)]
}
