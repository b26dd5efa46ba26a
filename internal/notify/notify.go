// Package notify wakes long polls inside one process: a waiter takes a
// channel for a topic and is woken when the topic is notified. Replicas do
// not see each other's notifications, so waiters also re-read their source
// of truth at a bounded interval.
package notify

import "sync"

// Notifier is a set of topics. The zero value is not usable; use New.
type Notifier struct {
	mu     sync.Mutex
	topics map[string]chan struct{}
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

// Notify wakes every waiter of topic.
func (n *Notifier) Notify(topic string) {
	n.mu.Lock()
	ch, ok := n.topics[topic]
	delete(n.topics, topic)
	n.mu.Unlock()
	if ok {
		close(ch)
	}
}
