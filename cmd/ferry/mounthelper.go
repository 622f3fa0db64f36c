package main

import (
	"path/filepath"
	"strings"
)

// mount(8) runs a helper for `mount -t fuse.ferry MANIFEST DIR -o OPTS`
// (and for an fstab line of type fuse.ferry) in one of two ways:
//
//   - /sbin/mount.fuse.ferry, when it exists (a symbolic link to ferry), as
//     "mount.fuse.ferry MANIFEST DIR [-sfnv] [-o OPTS] [-t fuse.ferry]";
//   - otherwise /sbin/mount.fuse (fuse3's mount.fuse3), which runs the
//     program named by the type from $PATH through /bin/sh as
//     "ferry MANIFEST DIR -o OPTS" (it always passes -o: at least "dev,suid").
//
// Both forms become `ferry mount --daemon [flags] MANIFEST DIR`: ferry
// returns once the mount is live, as mount(8) expects. Each option
// NAME=VALUE becomes --NAME VALUE (underscores for dashes) and NAME alone
// --NAME, for every flag of `ferry mount` (cache_dir=..., allow_other,
// max_conns=16, log_format=json); the generic options of mount(8) and of
// mount.fuse (rw, ro, dev, nosuid, noauto, nofail, _netdev, x-*, comment=...)
// are ignored.

// ignoredOptions are mount options that mean nothing to ferry: a ferry
// mount is read-only (but its outbox), nosuid and nodev are the FUSE
// defaults, and the rest concern mount(8), fstab or systemd.
var ignoredOptions = map[string]bool{
	"rw": true, "ro": true, "defaults": true, "auto": true, "noauto": true,
	"user": true, "nouser": true, "users": true, "owner": true, "group": true,
	"nofail": true, "_netdev": true, "dev": true, "nodev": true, "suid": true,
	"nosuid": true, "exec": true, "noexec": true, "async": true, "sync": true,
	"atime": true, "noatime": true, "relatime": true, "norelatime": true,
	"strictatime": true, "nostrictatime": true, "diratime": true, "nodiratime": true,
	"lazytime": true, "nolazytime": true, "silent": true, "loud": true,
}

// helperArgs recognizes a mount helper command line (see above) and
// rewrites it into ferry's own; ok is false for any other command line.
// fake is set for mount -f: check the options, mount nothing.
func helperArgs(argv0 string, args []string) (out []string, ok, fake bool, err error) {
	if !isHelperCall(argv0, args) {
		return nil, false, false, nil
	}
	// The manifest and the mountpoint always come first, so a name that
	// starts with "-" is not taken for a flag.
	if len(args) < 2 {
		return nil, true, false, usagef("mount", "mount helper: want MANIFEST and MOUNTPOINT, got %d argument(s)", len(args))
	}
	pos := args[:2]
	var opts []string
	sloppy := false
	for i := 2; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "-t" || a == "-N":
			if i+1 == len(args) {
				return nil, true, false, usagef("mount", "mount helper: %s wants a value", a)
			}
			i++
			switch a {
			case "-o":
				opts = append(opts, args[i])
			case "-N":
				return nil, true, false, usagef("mount", "mount helper: -N (mount namespace) is not supported")
			case "-t":
				if t := args[i]; t != "fuse.ferry" && t != "ferry" {
					return nil, true, false, usagef("mount", "mount helper: type %q: want fuse.ferry", t)
				}
			}
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			opts = append(opts, a[2:])
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for _, c := range a[1:] {
				switch c {
				case 's':
					sloppy = true
				case 'f':
					fake = true
				case 'n', 'v':
				default:
					return nil, true, false, usagef("mount", "mount helper: unknown flag -%c", c)
				}
			}
		default:
			return nil, true, false, usagef("mount", "mount helper: unexpected argument %q after MANIFEST and MOUNTPOINT", a)
		}
	}
	flags, err := optionFlags(strings.Join(opts, ","), sloppy)
	if err != nil {
		return nil, true, false, err
	}
	out = append([]string{"mount", "--daemon"}, flags...)
	return append(out, "--", pos[0], pos[1]), true, fake, nil
}

// isHelperCall reports whether ferry was started as a mount helper: under
// a mount.* name, or by mount.fuse3 with a manifest where a command
// belongs and an -o option.
func isHelperCall(argv0 string, args []string) bool {
	if strings.HasPrefix(filepath.Base(argv0), "mount.") {
		return true
	}
	if len(args) < 3 || strings.HasPrefix(args[0], "-") || findCommand(args[0]) != nil {
		return false
	}
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-o") {
			return true
		}
	}
	return false
}

// optionFlags turns a mount option string into flags of `ferry mount`.
// Unknown options are an error unless sloppy (mount -s).
func optionFlags(opts string, sloppy bool) ([]string, error) {
	f := newFlagSet(mountCommand())
	mountCommand().flags(f)
	var out []string
	for _, opt := range strings.Split(opts, ",") {
		name, value, hasValue := strings.Cut(opt, "=")
		if opt == "" || ignoredOptions[name] || strings.HasPrefix(name, "x-") || name == "comment" {
			continue
		}
		flagName := strings.ReplaceAll(name, "_", "-")
		fl := f.Lookup(flagName)
		if fl == nil || flagName == "daemon" || flagName == "help" {
			if sloppy {
				continue
			}
			return nil, usagef("mount", "mount option %q: unknown (options are the flags of 'ferry mount' with _ for -, e.g. cache_dir=/var/cache/ferry/data)", opt)
		}
		switch {
		case fl.Value.Type() == "bool" && !hasValue:
			out = append(out, "--"+flagName)
		case !hasValue:
			return nil, usagef("mount", "mount option %q wants a value (%s=...)", opt, name)
		default:
			out = append(out, "--"+flagName+"="+value)
		}
	}
	return out, nil
}
