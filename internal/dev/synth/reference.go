package synth

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/brianvoe/gofakeit/v7"
)

// Reference data sizes, as in the snapshot.
const (
	addressCount      = 30
	counterpartyCount = 20
	staffCount        = 20
	departmentCount   = 8
	currencyCount     = 3
)

// The fixed reference rows: the same codes and names as totesys.
var (
	currencyCodes    = []string{"GBP", "USD", "EUR"}
	paymentTypeNames = []string{"SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT", "PURCHASE_REFUND"}
	// departments with their locations; department 4's is misspelt 'Leds'
	// in the real data, and so here.
	departments = []struct{ name, location string }{
		{"Sales", "Manchester"}, {"Purchasing", "Manchester"}, {"Production", "Leeds"}, {"Dispatch", "Leds"},
		{"Finance", "Manchester"}, {"Facilities", "Manchester"}, {"Communications", "Leeds"}, {"HR", "Leeds"},
	}
)

// Word lists for the rows gofakeit has no generator for.
var (
	designNames = []string{"Bronze", "Concrete", "Cotton", "Fresh", "Frozen", "Granite", "Metal", "Plastic",
		"Rubber", "Soft", "Steel", "Wooden"}
	designDirs = []string{"/Applications", "/Library", "/System", "/Users", "/bin", "/boot", "/dev", "/etc",
		"/etc/mail", "/etc/periodic", "/home/user/dir", "/lib", "/lost+found", "/net", "/opt", "/opt/lib",
		"/opt/sbin", "/private", "/root", "/sbin", "/selinux", "/sys", "/usr", "/usr/libexec", "/usr/local/src",
		"/usr/ports", "/usr/share", "/usr/src", "/var", "/var/log", "/var/tmp"}
	districts       = []string{"Avon", "Bedfordshire", "Berkshire", "Borders", "Buckinghamshire", "Cambridgeshire"}
	line2Suffixes   = []string{"Bridge", "Circles", "Freeway", "Glens", "Pines", "Radial", "Turnpike", "Wall", "Ways"}
	departmentTowns = []string{"Manchester", "Leeds", "Liverpool", "Sheffield", "York"}
)

const (
	alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	alnumLower = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// referenceRows makes the rows of the small tables, in the column order of
// totesys.Tables: everything but design and the order tables. Rows are stamped at
// start, counterparty and staff a moment later (as in the snapshot).
func referenceRows(seed uint64, start, later time.Time) map[string][][]any {
	f := gofakeit.New(seed)
	rnd := rand.New(rand.NewPCG(seed, 0xa11)) // #nosec G404 -- synthetic data, not secrets
	rows := map[string][][]any{}
	for i := 1; i <= addressCount; i++ {
		var line2, district *string
		if f.Float64() < 0.3 {
			s := f.LastName() + " " + line2Suffixes[f.IntN(len(line2Suffixes))]
			line2 = &s
		}
		if f.Float64() < 0.5 {
			district = &districts[f.IntN(len(districts))]
		}
		rows["address"] = append(rows["address"], []any{int32(i), f.Street(), line2, district, f.City(), f.Zip(),
			f.Country(), phone(f), start, start})
	}
	for i := 1; i <= counterpartyCount; i++ {
		rows["counterparty"] = append(rows["counterparty"], []any{int32(i), f.Company(),
			1 + rnd.Int32N(addressCount), f.Name(), f.Name(), later, later})
	}
	for i, code := range currencyCodes {
		rows["currency"] = append(rows["currency"], []any{int32(i + 1), code, start, start})
	}
	for i, d := range departments {
		rows["department"] = append(rows["department"], []any{int32(i + 1), d.name, d.location, f.Name(), start, start})
	}
	for i := 1; i <= staffCount; i++ {
		first, last := f.FirstName(), f.LastName()
		rows["staff"] = append(rows["staff"], []any{int32(i), first, last, 1 + rnd.Int32N(departmentCount),
			email(first, last), later, later})
	}
	for i, name := range paymentTypeNames {
		rows["payment_type"] = append(rows["payment_type"], []any{int32(i + 1), name, start, start})
	}
	return rows
}

// phone makes a phone number shaped like totesys's: "1803 637401".
func phone(f *gofakeit.Faker) string {
	return fmt.Sprintf("%04d %06d", f.IntN(10_000), f.IntN(1_000_000))
}

func email(first, last string) string {
	return strings.ToLower(strings.ReplaceAll(first+"."+last, " ", "")) + "@terrifictotes.com"
}

// designFile returns a design's file name: "steel-20240223-g5k3.json".
func designFile(name string, day int64, bits uint64) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(name))
	b.WriteByte('-')
	b.WriteString(time.UnixMilli(day * msPerDay).UTC().Format("20060102"))
	b.WriteByte('-')
	for range 4 {
		b.WriteByte(alnumLower[bits%36])
		bits /= 36
	}
	b.WriteString(".json")
	return b.String()
}

// itemCode returns a purchase order's 7-character item code: "ZDOI5EA".
func itemCode(bits uint64) string {
	var b [7]byte
	for i := range b {
		b[i] = alnum[bits%36]
		bits /= 36
	}
	return string(b[:])
}
