package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// errSecondSignal is why the work of a command stops at once.
var errSecondSignal = errors.New("a second SIGINT or SIGTERM")

// workKey is the context key of the work context that graceful returns.
type workKey struct{}

// withSignals turns SIGINT and SIGTERM into the two stops of a command. The
// context it returns, every command's, ends at the first: a command that
// works in batches (graceful) then finishes the batch under way and starts
// no other, any other command stops. The work context it carries ends at
// the second, abandoning the batch under way (nothing of it is visible, as
// after kill -9); a third signal kills the process. release stops the
// watch.
func withSignals(parent context.Context) (ctx context.Context, release func()) {
	work, abort := context.WithCancelCause(parent)
	ctx, stop := context.WithCancel(context.WithValue(parent, workKey{}, work))
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 1; ; n++ {
			select {
			case <-work.Done():
				return
			case s := <-sigs:
				if n == 1 {
					stop()
					continue
				}
				slog.Default().Warn(fmt.Sprintf("%s again: stopping at once", s))
				signal.Reset(os.Interrupt, syscall.SIGTERM) // a third one kills
				abort(errSecondSignal)
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		abort(nil)
		stop()
		<-done
	}
}

// graceful is how a command that works in batches runs under the context
// of withSignals: under the work context it carries, stopping at a batch
// boundary once stop (the command's context's end) is closed. Under another
// context (a test's), it is ctx and no stop, the stages then running to
// their end whatever ctx does.
func graceful(ctx context.Context) (work context.Context, stop <-chan struct{}) {
	if w, ok := ctx.Value(workKey{}).(context.Context); ok {
		return w, ctx.Done()
	}
	return ctx, nil
}

// interrupted gives a one-shot command that a signal stopped (ctx ended)
// its exit code, 130 (128 + SIGINT, as shells report it), and err a word
// saying so; otherwise err is as it is.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	if err == nil {
		err = errors.New("stopped after the batch under way; the rest is left for the next run")
	}
	return exitCode(130, fmt.Errorf("interrupted: %w", err))
}
