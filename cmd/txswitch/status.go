package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/txswitch/txswitch/cmd/cluster"
	txswitch "github.com/txswitch/txswitch/switch"
)

func init() {
	register("status", "print a node's view: members, leader, term, commit/applied, peer progress, breakers, outbox", runStatus)
}

func runStatus(args []string) error {
	fs := newFlags("status", "--addr HOST:PORT [--admin-token T] [--json]")
	addr := fs.String("addr", "127.0.0.1:8100", "API address of any node")
	token := fs.String("admin-token", os.Getenv("TXSWITCH_ADMIN_TOKEN"), "admin API token (env TXSWITCH_ADMIN_TOKEN)")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	body, err := fetchStatus(*addr, *token)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := os.Stdout.Write(append(body, '\n'))
		return err
	}
	var st cluster.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("decode status: %w", err)
	}
	// Peer progress, the breakers and the export live on the leader (it
	// tracks the followers, routes the payments and exports): ask it too
	// when this node follows. A removed node's leader is only the last it
	// knew, of a cluster it is no longer in.
	var leader *cluster.Status
	if st.Raft.Leader != 0 && st.Raft.Leader != st.Raft.ID && !st.Raft.Removed {
		for _, m := range st.Raft.Members {
			if m.ID != st.Raft.Leader {
				continue
			}
			var ls cluster.Status
			if lb, err := fetchStatus(m.APIAddr, *token); err == nil && json.Unmarshal(lb, &ls) == nil && ls.Raft.ID == st.Raft.Leader {
				leader = &ls
			}
		}
	}
	if leader != nil && len(st.Raft.Progress) == 0 {
		st.Raft.Progress = leader.Raft.Progress
	}
	printStatus(os.Stdout, st, leader)
	return nil
}

func fetchStatus(addr, token string) ([]byte, error) {
	return adminCall(http.MethodGet, addr, "/v1/admin/status", token, nil)
}

// printStatus prints a node's status. leader is the leader's status when
// this node follows and the leader answered (else nil): a follower's
// breakers and export are not the cluster's, the leader's are.
func printStatus(w io.Writer, st cluster.Status, leader *cluster.Status) {
	r := st.Raft
	if r.Removed {
		// Raft still calls it a follower of the leader it last knew.
		fmt.Fprintf(w, "node %d (%s)  NOT A MEMBER: removed from the cluster  (its last view: state %s  leader %d  term %d)  commit %d  applied %d  snapshot %d\n",
			r.ID, st.APIAddr, strings.TrimPrefix(r.State, "State"), r.Leader, r.Term, r.Commit, r.Applied, r.SnapshotIndex)
		fmt.Fprintln(w, "it serves no requests (503 removed_from_cluster, /readyz too): stop it, or wipe its data dir and start it with --join to bring it back as a new member")
		fmt.Fprint(w, "\nthe members it knew when it was removed:")
	} else {
		fmt.Fprintf(w, "node %d (%s)  state %s  leader %d  term %d  commit %d  applied %d  snapshot %d\n",
			r.ID, st.APIAddr, strings.TrimPrefix(r.State, "State"), r.Leader, r.Term, r.Commit, r.Applied, r.SnapshotIndex)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEMBER\tRAFT\tAPI\tMATCH\tNEXT\tSTATE\tVERSIONS")
	for _, m := range r.Members {
		match, next, state := "-", "-", "-"
		if p, ok := r.Progress[m.ID]; ok {
			match, next, state = fmt.Sprint(p.Match), fmt.Sprint(p.Next), p.State
		}
		lead := ""
		if m.ID == r.Leader {
			lead = " *"
		}
		versions := "not reported"
		if v, ok := st.Versions.Members[m.ID]; ok {
			versions = fmt.Sprintf("%d..%d", v.Min, v.Max)
		}
		fmt.Fprintf(tw, "%d%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, lead, m.RaftAddr, m.APIAddr, match, next, state, versions)
	}
	_ = tw.Flush()
	if len(r.Progress) == 0 && !r.Removed {
		fmt.Fprintln(w, "(peer progress unknown: no leader reachable)")
	}
	fmt.Fprintf(w, "\ncluster version %d (this binary runs %d..%d)\n", st.Versions.Cluster, st.Versions.Binary.Min, st.Versions.Binary.Max)
	fmt.Fprintf(w, "routing config version %d\noutbox backlog %d events, export watermark %d\ncentral database: %s\n",
		st.ConfigVersion, st.Outbox.Backlog, st.Outbox.Watermark, st.CentralDB)
	following := r.Leader != 0 && r.Leader != r.ID
	if following && leader != nil && leader.Export != nil {
		fmt.Fprintf(w, "central database on the leader, node %d: %s\n", leader.Raft.ID, leader.CentralDB)
	}
	fmt.Fprintf(w, "open intents: %s\n", intentsLine(st.Intents, time.Now()))
	if len(st.ProvidersWithPayments) > 0 {
		var ps []string
		for _, p := range st.ProvidersWithPayments {
			switch {
			case p.FirstPayment != "" && p.At != nil:
				ps = append(ps, fmt.Sprintf("%s (first %s at %s)", p.Provider, p.FirstPayment, p.At.UTC().Format(time.RFC3339)))
			default:
				ps = append(ps, p.Provider+" (configured when the cluster moved to version 11)")
			}
		}
		fmt.Fprintf(w, "providers with payments (a configuration must keep them; unroute them instead): %s\n", strings.Join(ps, ", "))
	}
	// Only the leader routes payments; a follower's breakers, if any, are
	// those of calls it was finishing when it stopped leading.
	breakers, views, whose := st.Breakers, st.BreakerViews, ""
	switch {
	case following && leader == nil:
		fmt.Fprintf(w, "\nbreakers: the leader's, node %d, which did not answer (this node routes no payment)\n", r.Leader)
		return
	case following:
		breakers, views, whose = leader.Breakers, leader.BreakerViews, fmt.Sprintf(" on the leader, node %d", r.Leader)
	}
	var names []string
	for p := range breakers {
		names = append(names, p)
	}
	sort.Strings(names)
	if len(names) > 0 {
		fmt.Fprintf(w, "\nbreakers%s (provider  method: state, since when, transitions):\n", whose)
	}
	for _, p := range names {
		var ms []string
		for m, s := range breakers[p] {
			e := m + ": " + string(s)
			if v, ok := views[p][m]; ok && v.Changes > 0 {
				e += fmt.Sprintf(" since %s (%d changes)", v.Since.Format(time.RFC3339), v.Changes)
			}
			ms = append(ms, e)
		}
		sort.Strings(ms)
		fmt.Fprintf(w, "  %s  %s\n", p, strings.Join(ms, ", "))
	}
}

// intentsLine says how many provider calls have no final result, by state,
// with the age of the oldest: "none", or "in_flight 3 (oldest 2s), in_doubt
// 1 (oldest 12m0s)".
func intentsLine(is cluster.IntentsStatus, now time.Time) string {
	var parts []string
	for _, s := range txswitch.IntentStates {
		n := is.Count[s]
		if n == 0 {
			continue
		}
		part := fmt.Sprintf("%s %d", s, n)
		if at, ok := is.Oldest[s]; ok {
			part += fmt.Sprintf(" (oldest %s)", now.Sub(at).Truncate(time.Second))
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return "none"
	}
	line := strings.Join(parts, ", ")
	if is.Truncated {
		line += " (at least: too many to count)"
	}
	if is.Count[txswitch.IntentAmountMismatch] > 0 {
		line += "; amount_mismatch needs an operator: GET /v1/admin/intents?state=amount_mismatch lists them, POST /v1/admin/payments/{id}/resolve settles one"
	}
	return line
}
