# Build from the repository root:  docker build -f deploy/chunkserver.Dockerfile -t ghcr.io/feitian-k8s/chunkserver:0.1.0 .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish chunkserver/FeitianK8s.ChunkServer.csproj -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
ENV DOTNET_gcServer=0 \
    DOTNET_EnableDiagnostics=0
EXPOSE 9100 9101
ENTRYPOINT ["dotnet", "/app/FeitianK8s.ChunkServer.dll"]
