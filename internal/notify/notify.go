// Package notify wakes long polls: a waiter takes a channel for a topic
// and is woken when the topic is notified. Connected to a Relay, a
// Notifier also wakes the waiters of the other processes sharing its
// database (best effort), so waiters still re-read their source of truth
// at a bounded interval. LongPoll is that loop, written once: every long
// poll of the control plane (job leases, lease sync, log tails, session
// orders, session waits) runs on it and ends the same way.
package notify

import "sync"

// Notifier is a set of topics. The zero value is not usable; use New.
type Notifier struct {
	mu     sync.Mutex
	topics map[string]chan struct{}
	relay  *relayState
}

// New returns an empty Notifier.
func New() *Notifier { return &Notifier{topics: map[string]chan struct{}{}} }

// Wait returns a channel closed at the next Notify of topic. Take it
// before checking the condition, so a change in between is not missed.
func (n *Notifier) Wait(topic string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.topics[topic]
	if !ok {
		ch = make(chan struct{})
		n.topics[topic] = ch
	}
	return ch
}

// Notify wakes every waiter of topic, in this process and, when
// connected to a relay, in the others.
func (n *Notifier) Notify(topic string) {
	if rs := n.wake(topic); rs != nil {
		rs.queue(topic)
	}
}

// wake wakes this process's waiters of topic and returns the relay, if any.
func (n *Notifier) wake(topic string) *relayState {
	n.mu.Lock()
	ch, ok := n.topics[topic]
	delete(n.topics, topic)
	rs := n.relay
	n.mu.Unlock()
	if ok {
		close(ch)
	}
	return rs
}
