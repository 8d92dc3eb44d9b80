package sockpoll

// Controller is a connection that runs f on its socket's descriptor (a socket that may be out
// of Go's netpoller, such as the pool's upstream sockets); Pending uses it before
// syscall.Conn.
type Controller interface {
	Control(f func(fd uintptr)) error
}
