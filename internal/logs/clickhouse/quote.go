package clickhouse

import "strings"

// quote makes s a ClickHouse string literal that means s byte for byte:
// letters, digits and a few harmless characters stay, every other byte
// (quotes, backslashes, control characters, non-ASCII) becomes \xHH. So
// no value, whatever it holds, is read as anything but one string.
func quote(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" _-.:/@+,=", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteString(`\x`)
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	b.WriteByte('\'')
	return b.String()
}
