package jobs

import "sync"

// Notifier wakes long polls: a waiter takes a channel for a topic and is
// woken when the topic is notified. Topics name a queue ("queue/<org>"),
// a job ("job/<id>") or an agent ("agent/<id>").
//
// It works inside one process. Replicas sharing PostgreSQL do not see each
// other's notifications, so every waiter also re-checks the database at a
// bounded interval.
type Notifier struct {
	mu     sync.Mutex
	topics map[string]chan struct{}
}

// NewNotifier returns an empty Notifier.
func NewNotifier() *Notifier { return &Notifier{topics: map[string]chan struct{}{}} }

// Wait returns a channel closed at the next Notify of topic.
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

func queueTopic(org string) string { return "queue/" + org }
func jobTopic(id string) string    { return "job/" + id }
func agentTopic(id string) string  { return "agent/" + id }
