// Package synth makes a synthetic totesys source: Seed creates the totesys
// schema in an empty database and fills it with a history shaped like the
// real snapshot; Simulate and ChangeFraction then play its users' live
// activity. The pipeline never calls it: it serves `sandstone seed`,
// `sandstone simulate`, the demo, the benchmarks and the tests, and keeps
// its random-data dependencies (gofakeit) out of the stages and the Lambda.
package synth
