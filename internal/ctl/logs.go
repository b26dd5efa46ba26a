package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

func logsCommand() command {
	return command{
		name: "logs", args: "JOB",
		help: "Print a job's output; with -f, follow it until the job ends.\nWith --step, --grep or --from-line, print its lines (numbered with -n or --grep).",
		flags: func(fs *flag.FlagSet) {
			fs.Bool("f", false, "follow the output as it is produced")
			fs.String("step", "", "only the lines of this step (a ::group:: of the job's output)")
			fs.String("grep", "", "only the lines matching this RE2 regular expression (colour codes stripped for the match)")
			fs.Int64("from-line", 0, "start at this line number")
			fs.Bool("n", false, "number the lines")
		},
		run: func(e *env, g *globals, fs *flag.FlagSet) error {
			id, err := oneArg(fs, "job id")
			if err != nil {
				return err
			}
			var re *regexp.Regexp
			if p := flagString(fs, "grep"); p != "" {
				if re, err = regexp.Compile(p); err != nil {
					return usagef("--grep: %v", err)
				}
			}
			c, err := g.client(e)
			if err != nil {
				return err
			}
			followMode := flagString(fs, "f") == "true"
			step, from, number := flagString(fs, "step"), flagInt(fs, "from-line"), flagString(fs, "n") == "true"
			if step == "" && re == nil && from == 0 && !number {
				err = follow(e.ctx, e, c, id, followMode)
			} else {
				err = c.FollowJobLines(e.ctx, id, apiclient.LineQuery{From: from, Step: step}, followMode, func(l apiv1.LogLine) error {
					if re != nil && !re.MatchString(StripANSI(l.Text)) {
						return nil
					}
					if number || re != nil {
						_, err := fmt.Fprintf(e.stdout, "%6d  %s\n", l.Line, l.Text)
						return err
					}
					_, err := fmt.Fprintln(e.stdout, l.Text)
					return err
				})
			}
			if errors.Is(err, context.Canceled) {
				return exitError{130}
			}
			return err
		},
	}
}

func logsSearchCommand() command {
	return command{
		name: "logs search", args: "PATTERN",
		help: "Search the lines of the org's jobs: matches newest first as JOB:LINE [STEP] TEXT, then counts per job.\nPATTERN is an RE2 regular expression, e.g. 'error: .*timeout'.",
		flags: func(fs *flag.FlagSet) {
			fs.String("repo", "", "only jobs of this repository (owner/name)")
			fs.String("job", "", "only this job")
			fs.String("since", "7d", "from this time (RFC 3339) or this long ago (7d, 36h); at most 92 days before --until")
			fs.String("until", "", "up to this time or this long ago (default now)")
			fs.Int("limit", 100, "at most this many lines (1-1000)")
		},
		run: func(e *env, g *globals, fs *flag.FlagSet) error {
			pattern, err := oneArg(fs, "pattern")
			if err != nil {
				return err
			}
			if _, err := regexp.Compile(pattern); err != nil {
				return usagef("pattern: %v", err)
			}
			c, err := g.client(e)
			if err != nil {
				return err
			}
			res, err := c.SearchLogs(e.ctx, apiclient.LogSearchQuery{Pattern: pattern, Repo: flagString(fs, "repo"), Job: flagString(fs, "job"),
				Since: flagString(fs, "since"), Until: flagString(fs, "until"), Limit: int(flagInt(fs, "limit"))})
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(e.stdout, res)
			}
			for _, l := range res.Lines {
				step := ""
				if l.Step != "" {
					step = " [" + l.Step + "]"
				}
				fmt.Fprintf(e.stdout, "%s:%d%s %s\n", l.Job, l.Line, step, StripANSI(l.Text))
			}
			if len(res.Jobs) == 0 {
				fmt.Fprintln(e.stderr, "no matching lines")
				return nil
			}
			total := 0
			for _, j := range res.Jobs {
				total += j.Matches
			}
			fmt.Fprintf(e.stdout, "\n%d matching lines in %d jobs:\n", total, len(res.Jobs))
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			for _, j := range res.Jobs {
				repo := j.Repo
				if repo == "" {
					repo = "-"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", j.Job, repo, j.Matches, j.Latest.Local().Format("2006-01-02 15:04:05"))
			}
			tw.Flush()
			if res.Partial {
				fmt.Fprintln(e.stderr, "(the search reached a bound: there may be more; narrow it with --repo, --job or --since)")
			}
			return nil
		},
	}
}

// ansi matches terminal escape sequences: CSI (colours, cursor moves)
// and OSC (titles, links).
var ansi = regexp.MustCompile("\x1b\\[[0-9;?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)|\x1b[@-Z\\\\-_]")

// StripANSI removes terminal escape sequences from s.
func StripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	return ansi.ReplaceAllString(s, "")
}
