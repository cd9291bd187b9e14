package main

import (
	"errors"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

func TestMemoryLimit(t *testing.T) {
	cgroup := func(limit uint64, err error) func() (uint64, error) {
		return func() (uint64, error) { return limit, err }
	}
	tests := []struct {
		setting, env string
		cgroup       func() (uint64, error)
		want         int64
		from         string
		err          bool
	}{
		{"", "", cgroup(1<<30, nil), 966367641, "cgroup", false},
		{"", "", cgroup(0, memlimit.ErrNoLimit), 0, "none", false},
		{"", "", cgroup(0, memlimit.ErrCgroupsNotSupported), 0, "none", false},
		{"", "", cgroup(0, errors.New("unreadable")), 0, "", true},
		{"", "512MiB", cgroup(1<<30, nil), 0, "GOMEMLIMIT", false},
		{"off", "", cgroup(1<<30, nil), 0, "off", false},
		{"1536MiB", "", cgroup(1<<30, nil), 1536 << 20, "config", false},
		{"2GiB", "", nil, 2 << 30, "config", false},
		{"1000000", "", nil, 1000000, "config", false},
		{"2 GiB", "", nil, 2 << 30, "config", false},
		{"lots", "", nil, 0, "", true},
		{"-1MiB", "", nil, 0, "", true},
		{"9999999TiB", "", nil, 0, "", true},
	}
	for _, tt := range tests {
		t.Setenv("GOMEMLIMIT", tt.env)
		got, from, err := memoryLimit(tt.setting, tt.cgroup)
		if got != tt.want || from != tt.from || (err != nil) != tt.err {
			t.Errorf("memoryLimit(%q) with GOMEMLIMIT=%q: %d %q %v, want %d %q error %v", tt.setting, tt.env, got, from, err, tt.want, tt.from, tt.err)
		}
	}
}

func TestGCPercent(t *testing.T) {
	tests := []struct {
		setting int
		limited bool
		env     string
		want    int
		from    string
	}{
		{0, true, "", defaultGOGC, "default"},
		{0, false, "", 100, "default"},
		{0, true, "50", 0, "GOGC"},
		{0, false, "off", 0, "GOGC"},
		{150, true, "", 150, "config"},
		{150, false, "50", 150, "config"},
		{-1, false, "", -1, "config"},
	}
	for _, tt := range tests {
		t.Setenv("GOGC", tt.env)
		got, from := gcPercent(tt.setting, tt.limited)
		if got != tt.want || from != tt.from {
			t.Errorf("gcPercent(%d, limited %v) with GOGC=%q: %d %q, want %d %q", tt.setting, tt.limited, tt.env, got, from, tt.want, tt.from)
		}
	}
}
