package accelerate

import (
	"crypto/rand"
	"crypto/sha3"
	"math/big"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"
)

// generators evaluates the plan's generator calls: values Prisma's schema defaults make on
// the server (@default(now()), uuid(4|7), cuid(1|2), ulid(), nanoid(n)) and product, which
// pairs up ids for many-to-many links. now is fixed for the whole request (and written only
// when a plan asks for it).
type generators struct {
	now     time.Time
	nowText string
}

func newGenerators(now time.Time) *generators {
	return &generators{now: now}
}

func (g *generators) call(name string, args []any) (any, error) {
	arg := func(i int) any {
		if i < len(args) {
			return args[i]
		}
		return undefined
	}
	switch name {
	case "now":
		if g.nowText == "" {
			g.nowText = jsISOString(g.now)
		}
		return g.nowText, nil
	case "uuid":
		switch arg(0) {
		case 4.0:
			return uuid.NewString(), nil
		case 7.0:
			u, err := uuid.NewV7()
			if err != nil {
				return nil, err
			}
			return u.String(), nil
		}
		return nil, planErrorf("Invalid UUID generator arguments")
	case "cuid":
		switch arg(0) {
		case 1.0:
			return newCUID(), nil
		case 2.0:
			return newCUID2(), nil
		}
		return nil, planErrorf("Invalid CUID generator arguments")
	case "ulid":
		return ulid.Make().String(), nil
	case "nanoid":
		switch n := arg(0).(type) {
		case undefinedT:
			return newNanoID(21), nil
		case float64:
			if n < 0 || n > 1024 || n != float64(int(n)) {
				return nil, planErrorf("Invalid Nanoid generator arguments")
			}
			return newNanoID(int(n)), nil
		}
		return nil, planErrorf("Invalid Nanoid generator arguments")
	case "product":
		lhs, rhs := arg(0), arg(1)
		if lhs == any(undefined) || rhs == any(undefined) {
			return nil, planErrorf("Invalid Product generator arguments")
		}
		ll, lIsList := lhs.([]any)
		rl, rIsList := rhs.([]any)
		var out []any
		switch {
		case lIsList && rIsList:
			for _, l := range ll {
				for _, r := range rl {
					out = append(out, []any{l, r})
				}
			}
		case lIsList:
			for _, l := range ll {
				out = append(out, []any{l, rhs})
			}
		case rIsList:
			for _, r := range rl {
				out = append(out, []any{lhs, r})
			}
		default:
			out = []any{[]any{lhs, rhs}}
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	}
	return nil, planErrorf("Encountered an unknown generator '%s'", name)
}

// randomBase36 returns a number in [0, 36^n) written in base 36, zero-padded to n digits.
func randomBase36(n int) string {
	limit := new(big.Int).Exp(big.NewInt(36), big.NewInt(int64(n)), nil)
	v, err := rand.Int(rand.Reader, limit)
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return padBase36(v.Text(36), n)
}

// padBase36 keeps the last n digits of s, zero-padded (cuid's pad).
func padBase36(s string, n int) string {
	if len(s) >= n {
		return s[len(s)-n:]
	}
	return strings.Repeat("0", n-len(s)) + s
}

// cuid v1: 'c', the time in ms (base 36), a 4-digit counter, a 4-digit host fingerprint and
// 8 random digits. Ids made by one process sort by creation time, which ORDER BY id relies on.
var (
	cuidCounter     atomic.Uint32
	cuidFingerprint = sync.OnceValue(func() string {
		host, _ := os.Hostname()
		sum := len(host) + 36
		for _, r := range host {
			sum += int(r)
		}
		return padBase36(strconv.FormatInt(int64(os.Getpid()), 36), 2) + padBase36(strconv.FormatInt(int64(sum), 36), 2)
	})
)

const cuidBlockValues = 36 * 36 * 36 * 36

func newCUID() string {
	count := (cuidCounter.Add(1) - 1) % cuidBlockValues
	return "c" + strconv.FormatInt(time.Now().UnixMilli(), 36) +
		padBase36(strconv.FormatUint(uint64(count), 36), 4) + cuidFingerprint() + randomBase36(4) + randomBase36(4)
}

// cuid2: a random letter and the base-36 SHA3-512 hash of the time, a random salt, a
// counter and a process fingerprint, 24 characters in all.
var (
	cuid2Counter     atomic.Uint64
	cuid2Init        sync.Once
	cuid2Fingerprint string
)

const cuid2Length = 24

func cuid2Hash(input string) string {
	sum := sha3.Sum512([]byte(input))
	return new(big.Int).SetBytes(sum[:]).Text(36)[1:]
}

func newCUID2() string {
	cuid2Init.Do(func() {
		start, _ := rand.Int(rand.Reader, big.NewInt(476782367))
		cuid2Counter.Store(start.Uint64())
		cuid2Fingerprint = cuid2Hash(randomBase36(32))[:32]
	})
	letter, _ := rand.Int(rand.Reader, big.NewInt(26))
	count := cuid2Counter.Add(1) - 1
	input := strconv.FormatInt(time.Now().UnixMilli(), 36) + randomBase36(cuid2Length) +
		strconv.FormatUint(count, 36) + cuid2Fingerprint
	return string(rune('a'+letter.Int64())) + cuid2Hash(input)[1:cuid2Length]
}

// nanoid: n characters of a 64-symbol URL-safe alphabet.
const nanoidAlphabet = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"

func newNanoID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = nanoidAlphabet[b[i]&63]
	}
	return string(b)
}
