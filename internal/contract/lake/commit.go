package lake

import (
	"context"
	"fmt"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// Commit makes batch m.Sequence of the bucket visible, the last step of a
// stage's batch, its objects written: it saves state, the stage's resume
// state, under state/ (StateKey, recorded in m), then creates the manifest,
// stamped with the time, exclusively. A nil state saves none: the stage
// keeps it inline (m.State) or keeps none.
//
// It reports false, and no error, when another run committed the batch
// first (the manifest existed): this run's objects, and its state, then
// stay unreferenced, as readers follow manifests only. Errors are of kind
// BucketWriteFailed (Internal for a state that does not encode).
func (b *Bucket) Commit(ctx context.Context, m *Manifest, state any) (committed bool, err error) {
	id := BatchID(m.Sequence)
	if state != nil {
		data, err := EncodeState(state)
		if err != nil {
			return false, errkind.Wrap(errkind.Internal, fmt.Errorf("batch %s: %w", id, err))
		}
		m.StateKey = StateKey(m.Sequence, m.RunID)
		if err := b.Put(ctx, m.StateKey, data); err != nil {
			return false, errkind.Wrap(errkind.BucketWriteFailed, fmt.Errorf("batch %s: save state: %w", id, err))
		}
	}
	m.CreatedAt = time.Now().UTC()
	if err := b.PutManifest(ctx, m.Sequence, m); err != nil {
		if IsExists(err) {
			return false, nil
		}
		return false, errkind.Wrap(errkind.BucketWriteFailed, fmt.Errorf("commit batch %s: %w", id, err))
	}
	return true, nil
}
