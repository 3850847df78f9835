package transform

import (
	_ "embed"
	"encoding/csv"
	"strings"
)

// iso4217CSV is ISO 4217 List One (the current currency and fund codes) as
// published on 2024-06-25, with XCG (Caribbean Guilder), which succeeded
// ANG in 2025: one code and its ISO name a line. Codes several entities
// share (EUR, USD, ...) appear once.
//
//go:embed iso4217.csv
var iso4217CSV string

// currencyNames maps each ISO 4217 code to its name as ISO lists it.
var currencyNames = parseCurrencies(iso4217CSV)

func parseCurrencies(text string) map[string]string {
	records, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil {
		panic("transform: embedded iso4217.csv: " + err.Error())
	}
	names := make(map[string]string, len(records))
	for _, r := range records[1:] {
		names[r[0]] = r[1]
	}
	return names
}

// currencyName returns the ISO 4217 name of code; ok is false when code is
// not a current ISO 4217 code.
func currencyName(code string) (name string, ok bool) {
	name, ok = currencyNames[strings.ToUpper(strings.TrimSpace(code))]
	return name, ok
}
