// Package flags is feature flags on package reload: flags defined in code
// (name, description, owner, removal date, default), their values read
// from a file and swapped atomically when it changes, percentage rollouts
// and A/B/n variants assigned by a stable hash of a key, and a removal
// date that `go vet` enforces.
//
// # The model
//
// A [Registry] holds the flags a program defines, each a typed handle:
// [Registry.Bool] for on/off, [Registry.String], [Registry.Number] and
// [Object] for variants. A [Set] holds the registry's values: it loads
// them from a JSON (or YAML) file with [Set.Reload], reloads them when the
// file changes with [Set.Watch], and keeps every version in a
// reload.Value, with its history and rollback ([Set.Value]). A request
// takes one [Snapshot] (a lease on the current values) and evaluates all
// its flags through it, so it sees either the old values or the new ones,
// never a mix:
//
//	snap := set.Snapshot()
//	defer snap.Release()
//	if newCheckout.Enabled(snap, userID) { ... }
//	color := buttonColor.Get(snap, userID)
//
// [Set.Handler] does that for each HTTP request (the Snapshot is in the
// request's context: [FromContext]). Evaluations take no lock and
// allocate nothing. A file that fails to parse, names an unknown flag or
// gives a flag the wrong kind is refused whole, with a [FileError] per
// problem naming the file, the flag and the problem; the current values
// keep serving.
//
// Neither Reload nor Watch installs a signal handler: the program passes
// Reload to handoff.Options.Reload, so that SIGUSR2 reloads (SIGHUP
// upgrades the binary), and runs Watch in a goroutine of its own (see
// examples/flags).
//
// # The values file
//
// A JSON object (or the same in YAML) from flag names to values. A
// flag the file does not name has its default. For a Bool:
//
//	"new-checkout": true                       on for everyone (false: off)
//	"new-checkout": {"percent": 10}            on for 10 % of keys
//	"new-checkout": {"on": false,              off, except:
//	  "allow": ["qa-1", "qa-2"],                 these keys: on
//	  "deny": ["ceo"],                           these keys: off (before allow)
//	  "rules": [{"attribute": "country",         the first rule whose attribute
//	             "values": ["FR", "DE"],          has one of the values decides
//	             "percent": 50}]}                 ("on" or "percent")
//
// For variants ("button-color" with variants "blue" and "green"):
//
//	"button-color": "green"                               everyone gets green
//	"button-color": {"weights": {"blue": 50, "green": 50}} split by weight
//	"button-color": {"weights": {...},
//	  "allow": {"green": ["qa-1"]},                          pinned keys
//	  "deny": ["ceo"],                                       keys that get the default
//	  "rules": [{"attribute": "plan", "values": ["pro"],     as for a Bool,
//	             "variant": "green"}]}                       "variant" or "weights"
//
// Order: deny, allow, the first matching rule, then the rest ("on",
// "percent", "variant" or "weights"; a variant flag with none of them uses
// the weights of its definition, or its default variant). Attributes are
// the [Attr] values the caller passes to the evaluation.
//
// # Assignment
//
// A key's bucket for a flag is a number in [0, 100000) ([Buckets]):
//
//	h      = FNV-1a 64 (offset 14695981039346656037, prime 1099511628211)
//	         over the bytes of the flag's name, one 0x00 byte, the key's bytes
//	h      = MurmurHash3's fmix64 of h:
//	         h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33;
//	         h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33   (arithmetic mod 2^64)
//	bucket = h mod 100000
//
// A percentage p enables the keys whose bucket is below round(p × 1000):
// raising it only adds keys, lowering it only removes them. Weights w0 …
// wn-1, in the order the variants were defined (not the file's order),
// give variant i the buckets from c(i-1) to below c(i), where c(-1) = 0
// and c(i) = floor(100000 × (w0 + … + wi) / (w0 + … + wn-1)), the last
// non-zero one being 100000. So the same key gets the same answer on every
// instance and after every restart, another service can reproduce an
// assignment with these lines ([Bucket] computes the bucket), and a change
// of weights moves only the keys whose bucket changes owner: 50/50 to
// 40/60 moves exactly the 10 % between the two.
//
// An example (tested): for the flag "new-checkout" and the key "user-7",
// FNV-1a gives 0xf4529c24cf120f07, fmix64 0xd3dbb86c24b7556d, the bucket
// is 1645: enabled at 2 %, not at 1 %. The key "alice" falls in bucket
// 10097: not enabled at 10 %, enabled at 10.1 %. For "button-color"
// (variants blue then green, 50/50) "alice" is in bucket 50527, green;
// "bob" in 21529, blue.
//
// # Exposures
//
// Options.OnExposure is called for each evaluation of a sampled key with
// the flag, the variant, the key and the values version (an [Exposure]),
// for A/B analysis. Options.ExposureRate samples keys by a hash of the
// key alone (the same computation with the name "#exposure", which no flag
// can have), so a sampled key's exposures are complete and the sample is
// independent of every assignment.
//
// # Stale flags
//
// Every flag has a removal date (Def.RemoveBy). The analyzer in
// flags/flagcheck, run as `go vet -vettool=$(which handoff-flagcheck)
// ./...` (the command is flags/cmd/handoff-flagcheck), reports flags past
// it, names evaluated that no code registers, and registered flags no
// code evaluates; `handoff-flagcheck values FILE ./...` lists a values
// file against the registry. flagstest.NoExpired fails a test once a flag
// is expired.
//
// # Tests
//
// A test makes a Set of its own with the values it wants
// (flagstest.New), and hands it to the code under test: nothing is
// global, so tests with different values run in parallel.
//
// # OpenFeature
//
// flags/ofprovider is an OpenFeature provider on a Set, for code written
// against the OpenFeature API; it emits PROVIDER_CONFIGURATION_CHANGED on
// each swap.
//
// # Deploying values
//
// Write the new file next to the live one and rename it into place (an
// editor's save does); a ConfigMap volume works as it is. The watcher
// loads once the changes have been quiet for Options.Debounce (20ms). A
// half-written JSON file does not parse and is refused; a YAML file
// written in place can parse half-way, so write YAML by rename.
package flags
