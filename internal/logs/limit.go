package logs

import "fmt"

// Notice ends a job's log once its output reached the limit of limit
// bytes; what the job wrote after that is not kept.
func Notice(limit int64) string {
	return fmt.Sprintf("\n[nimbus: output truncated: this job's log reached its limit of %d bytes]\n", limit)
}

// admit decides what of fresh (chunks not stored yet, in order) to keep
// when the job has used bytes of its limit already (limit <= 0: no
// limit). The chunk that reaches the limit is cut there and ends with
// Notice; the ones after it are dropped. Each chunk kept has Counted set.
func admit(used, limit int64, fresh []Chunk) []Chunk {
	keep := make([]Chunk, 0, len(fresh))
	for _, c := range fresh {
		n := int64(len(c.Data))
		if limit > 0 {
			if used >= limit {
				break // the log is full; its notice is already there
			}
			if used+n > limit {
				n = limit - used
				c.Data = append(c.Data[:n:n], Notice(limit)...)
			}
		}
		c.Counted = n
		used += n
		keep = append(keep, c)
	}
	return keep
}
