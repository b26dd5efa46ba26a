package ctl

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

func egressCommand() command {
	return command{name: "egress suggest", help: "Propose an allow-list from the egress reports of recent jobs with a label (run them in audit mode first).",
		flags: func(fs *flag.FlagSet) {
			fs.String("label", "", "only jobs with this label (empty: all)")
			fs.Int("days", 7, "reports of the last this many days (1-90)")
		}, run: egressSuggest}
}

func egressSuggest(e *env, g *globals, fs *flag.FlagSet) error {
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	label := flagString(fs, "label")
	c, err := g.client(e)
	if err != nil {
		return err
	}
	sug, err := c.SuggestEgress(e.ctx, label, int(flagInt(fs, "days")))
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, sug)
	}
	if sug.Jobs == 0 {
		fmt.Fprintf(e.stderr, "No egress reports since %s for label %q.\n", sug.Since.Format("2006-01-02"), label)
		return nil
	}
	// A rule for --egress-policy-file, ready to paste.
	fmt.Fprintf(e.stdout, "# From the egress reports of %d jobs since %s.\n", sug.Jobs, sug.Since.Format("2006-01-02"))
	fmt.Fprintln(e.stdout, "rules:")
	if label != "" {
		fmt.Fprintf(e.stdout, "  - labels: [%s]\n", strconv.Quote(label))
	} else {
		fmt.Fprintln(e.stdout, "  - mode: allow-list")
	}
	if label != "" {
		fmt.Fprintln(e.stdout, "    mode: allow-list")
	}
	fmt.Fprintln(e.stdout, "    allow:")
	for _, a := range sug.Allow {
		note := fmt.Sprintf("%d of %d jobs, %d times", a.Jobs, sug.Jobs, a.Count)
		if a.Listed {
			note += ", already allowed"
		}
		fmt.Fprintf(e.stdout, "      - %s  # %s\n", strconv.Quote(a.Entry), note)
	}
	return nil
}

// printEgress writes a job's network policy and report under jobs show.
func printEgress(w io.Writer, eg *apiv1.JobEgress) {
	p := eg.Policy
	fmt.Fprintf(w, "Egress policy:\t%s", p.Mode)
	if len(p.Allow) > 0 {
		fmt.Fprintf(w, " (%d entries: %s)", len(p.Allow), abbreviate(p.Allow, 6))
	}
	fmt.Fprintln(w)
	r := eg.Report
	if r == nil {
		return
	}
	fmt.Fprintf(w, "Egress:\t%d bytes out, %d in; %d names, %d connections allowed, %d refused",
		r.BytesOut, r.BytesIn, len(r.Names), len(r.Allowed), len(r.Refused))
	if r.Mode == "audit" {
		fmt.Fprintf(w, ", %d not on the allow-list", len(r.Unlisted))
	}
	fmt.Fprintln(w)
	for _, n := range r.Names {
		line := fmt.Sprintf("%s %s %s ×%d", n.Verdict, n.Type, n.Name, n.Count)
		if len(n.Blocked) > 0 {
			line += " (blocked answers: " + strings.Join(n.Blocked, ", ") + ")"
		}
		fmt.Fprintf(w, "  name:\t%s\n", line)
	}
	for _, x := range []struct {
		what  string
		conns []apiv1.EgressConn
	}{{"allowed", r.Allowed}, {"refused", r.Refused}, {"unlisted", r.Unlisted}} {
		for _, c := range x.conns {
			fmt.Fprintf(w, "  %s:\t%s %s ×%d\n", x.what, c.Proto, hostPort(c), c.Count)
		}
	}
}

func hostPort(c apiv1.EgressConn) string {
	host := c.Addr
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if c.Port == 0 {
		return host
	}
	return host + ":" + strconv.Itoa(int(c.Port))
}

func abbreviate(ss []string, n int) string {
	if len(ss) <= n {
		return strings.Join(ss, ", ")
	}
	return strings.Join(ss[:n], ", ") + fmt.Sprintf(", … %d more", len(ss)-n)
}
