//go:build linux

package proc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// TCPSockets lists the TCP sockets, IPv4 and IPv6, of this network
// namespace whose state is in the mask states. It asks the kernel's
// sock_diag netlink interface, which filters by state before it copies
// anything: unlike reading /proc/net/tcp, the thousands of TIME_WAIT
// sockets a load of new connections leaves cost next to nothing.
func TCPSockets(states uint32) ([]TCPSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("proc: sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	var out []TCPSocket
	for seq, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := diagDump(fd, uint32(seq+1), family, states)
		if err != nil {
			return nil, err
		}
		out = append(out, socks...)
	}
	return out, nil
}

// TCPLookup finds the TCP socket whose local and remote addresses are
// these (exact, in one lookup: the kernel does not walk its tables). An
// IPv4 pair is looked for among the IPv4 sockets, then among the IPv6
// sockets as IPv4-mapped addresses (a dual-stack listener's). It returns
// ok false when no connected socket has this pair (the kernel's answer of
// a listener on the local address is not taken).
func TCPLookup(local, remote netip.AddrPort) (s TCPSocket, ok bool, err error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return s, false, fmt.Errorf("proc: sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	type try struct {
		family        uint8
		local, remote netip.Addr
	}
	l, r := local.Addr().Unmap(), remote.Addr().Unmap()
	tries := []try{{unix.AF_INET6, l, r}}
	if l.Is4() && r.Is4() {
		tries = []try{{unix.AF_INET, l, r}, {unix.AF_INET6, netip.AddrFrom16(l.As16()), netip.AddrFrom16(r.As16())}}
	}
	for i, t := range tries {
		id := make([]byte, sizeofSockID)
		binary.BigEndian.PutUint16(id[0:], local.Port())
		binary.BigEndian.PutUint16(id[2:], remote.Port())
		copy(id[4:20], t.local.AsSlice())
		copy(id[20:36], t.remote.AsSlice())
		binary.NativeEndian.PutUint32(id[40:], ^uint32(0)) // INET_DIAG_NOCOOKIE
		binary.NativeEndian.PutUint32(id[44:], ^uint32(0))
		socks, err := diagRequest(fd, uint32(i+1), t.family, ^uint32(0), id, 0)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return s, false, err
		}
		// The kernel's lookup falls back to a listener on the local
		// address: only the connection itself is an answer.
		if len(socks) > 0 && socks[0].Remote == netip.AddrPortFrom(r, remote.Port()) {
			return socks[0], true, nil
		}
	}
	return s, false, nil
}

// Sizes of the sock_diag structures (include/uapi/linux/inet_diag.h).
const (
	sizeofSockID = 48 // inet_diag_sockid
	sizeofReq    = 8 + sizeofSockID
	sizeofMsg    = 4 + sizeofSockID + 20
)

// diagDump asks for the TCP sockets of one family in states and reads the
// answer to its end.
func diagDump(fd int, seq uint32, family uint8, states uint32) ([]TCPSocket, error) {
	return diagRequest(fd, seq, family, states, nil, unix.NLM_F_DUMP)
}

// diagRequest sends one inet_diag_req_v2 for TCP sockets of family in
// states, with the socket id id (nil: zeros) and the netlink flags flags
// besides NLM_F_REQUEST, and reads the answer to its end. A kernel error
// is returned as its syscall.Errno, wrapped.
func diagRequest(fd int, seq uint32, family uint8, states uint32, id []byte, flags uint16) ([]TCPSocket, error) {
	req := make([]byte, unix.NLMSG_HDRLEN+sizeofReq)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|flags)
	ne.PutUint32(req[8:], seq)
	r := req[unix.NLMSG_HDRLEN:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], states)
	copy(r[8:], id)
	dump := flags&unix.NLM_F_DUMP != 0
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("proc: sock_diag request: %w", err)
	}
	var out []TCPSocket
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("proc: sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("proc: sock_diag answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(ne.Uint32(m.Data)); e != 0 {
						return nil, fmt.Errorf("proc: sock_diag: %w", syscall.Errno(-e))
					}
				}
				return nil, fmt.Errorf("proc: sock_diag: malformed error message")
			}
			if len(m.Data) < sizeofMsg {
				return nil, fmt.Errorf("proc: sock_diag: short message (%d bytes)", len(m.Data))
			}
			out = append(out, parseDiagMsg(m.Data))
			if !dump { // one answer, no NLMSG_DONE
				return out, nil
			}
		}
	}
}

// parseDiagMsg decodes an inet_diag_msg: family, state, timer, retrans,
// then the socket id (ports and addresses in network order), then
// expires, rqueue, wqueue, uid and inode in host order.
func parseDiagMsg(b []byte) TCPSocket {
	family, state := b[0], b[1]
	id := b[4 : 4+sizeofSockID]
	n := 4
	if family == unix.AF_INET6 {
		n = 16
	}
	src, _ := netip.AddrFromSlice(id[4 : 4+n])
	dst, _ := netip.AddrFromSlice(id[20 : 20+n])
	return TCPSocket{
		Local:  netip.AddrPortFrom(src.Unmap(), binary.BigEndian.Uint16(id[0:])),
		Remote: netip.AddrPortFrom(dst.Unmap(), binary.BigEndian.Uint16(id[2:])),
		State:  int(state),
		Inode:  uint64(binary.NativeEndian.Uint32(b[4+sizeofSockID+16:])),
	}
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
