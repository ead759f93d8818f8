//go:build linux

package proc

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TCPListen is the state of a listening socket in /proc/net/tcp.
const TCPListen = 0x0A

// TCPSocket is a line of /proc/net/tcp or /proc/net/tcp6.
type TCPSocket struct {
	Local, Remote netip.AddrPort // IPv4-mapped IPv6 addresses unmapped
	State         int            // TCPListen, 1 for established, ... (include/net/tcp_states.h)
	Inode         uint64         // 0 once no process holds the socket
}

// TCPSockets reads the kernel's TCP socket tables of this process's network
// namespace, IPv4 and IPv6.
func TCPSockets() ([]TCPSocket, error) {
	var out []TCPSocket
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(name)
		if os.IsNotExist(err) && name == "/proc/net/tcp6" {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		lines := strings.Split(string(b), "\n")
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			local, err1 := parseHexAddr(f[1])
			remote, err2 := parseHexAddr(f[2])
			state, err3 := strconv.ParseInt(f[3], 16, 32)
			inode, err4 := strconv.ParseUint(f[9], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
				return nil, fmt.Errorf("proc: malformed line in %s: %q", name, line)
			}
			out = append(out, TCPSocket{Local: local, Remote: remote, State: int(state), Inode: inode})
		}
	}
	return out, nil
}

// parseHexAddr decodes an address of /proc/net/tcp: "0100007F:1F90"
// (IPv4, the bytes of each 32-bit word in host order, little-endian here)
// or 32 hex digits for IPv6.
func parseHexAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return netip.AddrPort{}, fmt.Errorf("proc: bad address %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("proc: bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 { // each word is little-endian
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

// SocketInodes returns the inodes of the sockets among pid's open file
// descriptors ("socket:[123]").
func SocketInodes(pid int) (map[uint64]bool, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if s, ok := strings.CutPrefix(l, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				out[ino] = true
			}
		}
	}
	return out, nil
}
