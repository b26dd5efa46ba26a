package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
)

// Storage confines every session's files to <root>/<org>/<user>/<repo-hash>/.
// The org level keeps two orgs' users of the same name apart.
type Storage struct {
	root string
}

// SessionDirs are the directories of one session, all under Base.
type SessionDirs struct {
	Base           string // <root>/<org>/<user>/<repo-hash>, owned by the agent
	Workspace      string // Base/ws: the copy of the workspace
	OutputUserRoot string // Base/out: bound at the developer's output_user_root
	OutputBase     string // the output base inside Base (under out/, or ob/)
	Tmp            string // Base/tmp: the sandbox's /tmp
	Agent          string // Base/agent: the agent's own files (logs, staging); never in the sandbox
}

// NewStorage uses root (created when missing). Every ancestor of root must
// be searchable by others, since sandboxes run as other uids.
func NewStorage(root string) (*Storage, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("storage root %q is not absolute", root)
	}
	root = filepath.Clean(root)
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("storage root: %w", err)
	}
	for dir := root; ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("storage root: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return nil, fmt.Errorf("storage root: %s (mode %v) is not searchable by the sandbox uids; chmod o+x it", dir, st.Mode().Perm())
		}
		if dir == "/" {
			break
		}
	}
	return &Storage{root: root}, nil
}

// Root returns the storage root.
func (s *Storage) Root() string { return s.root }

// Dir returns <root>/<org>/<user>/<repoHash> after checking that each part
// is a single safe path component.
func (s *Storage) Dir(org, user, repoHash string) (string, error) {
	if err := pki.ValidateName(org); err != nil {
		return "", fmt.Errorf("org: %w", err)
	}
	if err := pki.ValidateName(user); err != nil {
		return "", fmt.Errorf("user: %w", err)
	}
	if err := rbs.ValidateRepoHash(repoHash); err != nil {
		return "", err
	}
	dir := filepath.Join(s.root, org, user, repoHash)
	if rel, err := filepath.Rel(s.root, dir); err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) != 2 {
		return "", fmt.Errorf("session directory %q escapes the storage root", dir)
	}
	return dir, nil
}

// Prepare creates (or reuses) the session's directories for m, making the
// sandbox-visible ones owned by uid:gid (uid -1: the agent's own).
func (s *Storage) Prepare(org, user, repoHash string, m Mirror, uid, gid int) (SessionDirs, error) {
	base, err := s.Dir(org, user, repoHash)
	if err != nil {
		return SessionDirs{}, err
	}
	for _, d := range []string{filepath.Join(s.root, org), filepath.Join(s.root, org, user), base} {
		if err := mkdirOwned(d, 0o711, -1, -1); err != nil {
			return SessionDirs{}, err
		}
	}
	d := SessionDirs{
		Base:           base,
		Workspace:      filepath.Join(base, "ws"),
		OutputUserRoot: filepath.Join(base, "out"),
		Tmp:            filepath.Join(base, "tmp"),
		Agent:          filepath.Join(base, "agent"),
	}
	if rel, ok := within(m.OutputUserRoot, m.OutputBase); ok {
		d.OutputBase = filepath.Join(d.OutputUserRoot, rel)
	} else {
		d.OutputBase = filepath.Join(base, "ob")
	}
	if err := mkdirOwned(d.Agent, 0o700, -1, -1); err != nil {
		return SessionDirs{}, err
	}
	// /tmp starts empty each time, as after a reboot.
	if err := os.RemoveAll(d.Tmp); err != nil {
		return SessionDirs{}, fmt.Errorf("clear session tmp: %w", err)
	}
	for _, dir := range []string{d.Workspace, d.OutputUserRoot, d.Tmp} {
		if err := mkdirOwned(dir, 0o700, uid, gid); err != nil {
			return SessionDirs{}, err
		}
		if err := chownTree(dir, uid, gid); err != nil {
			return SessionDirs{}, err
		}
	}
	if d.OutputBase == filepath.Join(base, "ob") {
		if err := mkdirOwned(d.OutputBase, 0o700, uid, gid); err != nil {
			return SessionDirs{}, err
		}
		if err := chownTree(d.OutputBase, uid, gid); err != nil {
			return SessionDirs{}, err
		}
	} else if err := mkdirAllOwned(d.OutputUserRoot, d.OutputBase, uid, gid); err != nil {
		return SessionDirs{}, err
	}
	return d, nil
}

// OwnerOf returns the uid owning the session's workspace copy, if it exists.
func (s *Storage) OwnerOf(org, user, repoHash string) (int, bool) {
	base, err := s.Dir(org, user, repoHash)
	if err != nil {
		return 0, false
	}
	st, err := os.Lstat(filepath.Join(base, "ws"))
	if err != nil || !st.IsDir() {
		return 0, false
	}
	return int(st.Sys().(*syscall.Stat_t).Uid), true
}

func mkdirOwned(dir string, mode fs.FileMode, uid, gid int) error {
	err := os.Mkdir(dir, mode)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("storage: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("storage: %s is not a directory", dir)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if uid >= 0 {
		if err := os.Lchown(dir, uid, gid); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
	}
	return nil
}

// mkdirAllOwned creates the directories from top (which exists) down to dir.
func mkdirAllOwned(top, dir string, uid, gid int) error {
	rel, ok := within(top, dir)
	if !ok {
		return fmt.Errorf("storage: %s is not under %s", dir, top)
	}
	root, err := os.OpenRoot(top)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	defer root.Close()
	cur := ""
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "" || part == "." {
			continue
		}
		cur = filepath.Join(cur, part)
		if err := root.Mkdir(cur, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("storage: %w", err)
		}
		if uid >= 0 {
			if err := root.Lchown(cur, uid, gid); err != nil {
				return fmt.Errorf("storage: %w", err)
			}
		}
	}
	return nil
}

// chownTree gives a session's tree to uid when it belongs to another uid
// (the session got another uid than last time). It works through an
// os.Root, so links planted in the tree cannot redirect it.
func chownTree(dir string, uid, gid int) error {
	if uid < 0 {
		return nil
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if sys := st.Sys().(*syscall.Stat_t); int(sys.Uid) == uid && int(sys.Gid) == gid {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := root.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("storage: chown %s: %w", p, err)
		}
		return nil
	})
}

// within returns dir relative to top when dir is top or below it.
func within(top, dir string) (string, bool) {
	rel, err := filepath.Rel(top, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", false
	}
	return rel, true
}
