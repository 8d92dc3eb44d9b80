# One image, one binary: the operator ("edgepool manager") deploys this same image as the
# pooler ("edgepool pooler"), so the control plane and the data plane never skew.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY pooler/ pooler/
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w" -o /out/edgepool ./cmd/edgepool

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/edgepool /edgepool
USER 65532:65532
ENTRYPOINT ["/edgepool"]
