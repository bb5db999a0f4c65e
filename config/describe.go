package config

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Describe writes the resolved configuration for people: the command and stanza, the files read, one line per option
// "name=value  (source)" grouped as global options, then each repository, then each PostgreSQL host, then the ignored
// options and warnings. Secure values print as <redacted>. Defaults are listed only when showDefaults is set.
func (c *Config) Describe(w io.Writer, showDefaults bool) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "command: %s\n", c.Command)
	if len(c.Parameters) > 0 {
		fmt.Fprintf(b, "parameters: %s\n", strings.Join(c.Parameters, " "))
	}
	if c.Stanza != "" {
		src := ""
		if o, ok := c.Option("stanza"); ok {
			src = "  (" + o.Source.String() + ")"
		}
		fmt.Fprintf(b, "stanza: %s%s\n", c.Stanza, src)
	}
	if c.Format != "" {
		fmt.Fprintf(b, "format: %s\n", c.Format)
	}
	for _, f := range c.Files {
		fmt.Fprintf(b, "file: %s\n", f)
	}
	for _, p := range c.Projections {
		fmt.Fprintf(b, "projection: %s %s\n", p.Kind, p.Name)
	}
	heading := ""
	for _, o := range c.options {
		if o.Unused != "" || o.Name == "stanza" || (!showDefaults && o.Source.Kind == SourceDefault) {
			continue
		}
		h := "[global]"
		if o.Group != "" {
			h = fmt.Sprintf("[%s%d]", o.Group, o.Index)
		}
		if h != heading {
			fmt.Fprintln(b, h)
			heading = h
		}
		values := []string{o.Value}
		if len(o.Values) > 0 {
			values = o.Values
		}
		for _, v := range values {
			if o.Negated {
				fmt.Fprintf(b, "  no-%s  (%s)\n", o.Name, o.Source.location(o.Name))
				continue
			}
			fmt.Fprintf(b, "  %s=%s  (%s)\n", o.Name, v, o.Source.location(o.Name))
		}
	}
	for _, r := range c.Repos {
		s := r.Schedules
		if s.Full == "" && s.Differential == "" && s.Incremental == "" {
			continue
		}
		fmt.Fprintf(b, "[%s schedules]  (%s)\n", r.Name(), s.Source)
		for _, e := range [][2]string{{"full", s.Full}, {"differential", s.Differential}, {"incremental", s.Incremental}} {
			if e[1] != "" {
				fmt.Fprintf(b, "  %s=%s\n", e[0], e[1])
			}
		}
	}
	if len(c.ignored) > 0 {
		fmt.Fprintln(b, "ignored:")
		for _, i := range c.ignored {
			fmt.Fprintf(b, "  %s  (%s): %s\n", i.Name, i.Source.location(i.Name), i.Reason)
		}
	}
	if len(c.warnings) > 0 {
		fmt.Fprintln(b, "warnings:")
		for _, wn := range c.warnings {
			fmt.Fprintf(b, "  %s\n", strings.ReplaceAll(wn, "\n", " "))
		}
	}
	if err := b.Flush(); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	return nil
}
