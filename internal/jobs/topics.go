package jobs

func queueTopic(org string) string { return "queue/" + org }

// Topic is the notify topic of a job: it is notified when the job's state
// changes, and by internal/logs when output arrives.
func Topic(id string) string { return "job/" + id }

func agentTopic(id string) string { return "agent/" + id }

// OrgTopic is notified whenever a job of org is created or changes state
// (the dashboard's live job lists wait on it).
func OrgTopic(org string) string { return "jobs/" + org }
