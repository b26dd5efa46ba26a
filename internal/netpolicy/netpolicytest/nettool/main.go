// Command nettool is what red-team tests run inside a sandbox: it tries
// one network operation and prints "LABEL: ok DETAIL" or "LABEL: err
// DETAIL (ELAPSED)". It is built by the tests (CGO_ENABLED=0) and uses the
// sandbox's own /etc/resolv.conf through Go's resolver.
//
//	nettool LABEL get URL
//	nettool LABEL connect tcp|udp HOST:PORT
//	nettool LABEL dns SERVER udp|tcp NAME TYPE
//	nettool LABEL unix PATH-or-@ABSTRACT
//	nettool LABEL listen tcp ADDR DURATION   (accepts until DURATION passed)
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: nettool LABEL get|connect|dns|unix ...")
		os.Exit(2)
	}
	label, cmd, args := os.Args[1], os.Args[2], os.Args[3:]
	start := time.Now()
	detail, err := run(cmd, args)
	if err != nil {
		fmt.Printf("%s: err %v (%s)\n", label, err, time.Since(start).Round(time.Millisecond))
		return
	}
	fmt.Printf("%s: ok %s\n", label, detail)
}

func run(cmd string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch cmd {
	case "get":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b))), nil
	case "connect":
		var d net.Dialer
		c, err := d.DialContext(ctx, args[0], args[1])
		if err != nil {
			return "", err
		}
		defer c.Close()
		if args[0] == "udp" {
			// A UDP "connection" only fails when an answer says so.
			c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte("x")); err != nil {
				return "", err
			}
			buf := make([]byte, 16)
			if _, err := c.Read(buf); err != nil && !os.IsTimeout(err) {
				return "", err
			}
		}
		return c.RemoteAddr().String(), nil
	case "dns":
		m := new(dns.Msg)
		qtype, ok := dns.StringToType[strings.ToUpper(args[3])]
		if !ok {
			return "", fmt.Errorf("unknown type %s", args[3])
		}
		m.SetQuestion(dns.Fqdn(args[2]), qtype)
		c := &dns.Client{Net: args[1], Timeout: 3 * time.Second}
		resp, _, err := c.ExchangeContext(ctx, m, args[0])
		if err != nil {
			return "", err
		}
		var answers []string
		for _, rr := range resp.Answer {
			f := strings.Fields(rr.String())
			answers = append(answers, f[len(f)-1])
		}
		return fmt.Sprintf("rcode=%s answers=%s", dns.RcodeToString[resp.Rcode], strings.Join(answers, ",")), nil
	case "listen":
		ln, err := net.Listen(args[0], args[1])
		if err != nil {
			return "", err
		}
		d, err := time.ParseDuration(args[2])
		if err != nil {
			return "", err
		}
		fmt.Printf("listening %s\n", ln.Addr())
		time.AfterFunc(d, func() { ln.Close() })
		n := 0
		for {
			c, err := ln.Accept()
			if err != nil {
				return fmt.Sprintf("accepted %d", n), nil
			}
			n++
			c.Close()
		}
	case "unix":
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", args[0])
		if err != nil {
			return "", err
		}
		c.Close()
		return args[0], nil
	}
	return "", fmt.Errorf("unknown command %q", cmd)
}
