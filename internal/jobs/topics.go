package jobs

func queueTopic(org string) string { return "queue/" + org }
func jobTopic(id string) string    { return "job/" + id }
func agentTopic(id string) string  { return "agent/" + id }
