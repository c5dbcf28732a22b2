package policy

import (
	"context"
	"time"
)

// watch polls the configured paths every interval and reloads the policy
// when the digest of their names and contents changes. Polling (rather
// than inotify) follows symlink swaps such as Kubernetes ConfigMap
// updates and needs no extra dependency; reading a few policy files per
// second is cheap.
func (e *Engine) watch(ctx context.Context, interval time.Duration) {
	defer close(e.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = e.reload(ctx, false)
		}
	}
}
