package docker

// WorkRootForTest is the executor's work root.
func (e *Executor) WorkRootForTest() string { return e.opts.WorkRoot }
