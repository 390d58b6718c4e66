// Built in GOPATH mode (GO111MODULE=off) against Debian's packaged sources in /usr/share/gocode;
// this file only marks the program as module-aware so imports like sprig/v3 resolve there.
module helmrender

go 1.19
