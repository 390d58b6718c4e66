# Build from the repository root:  docker build -f deploy/master.Dockerfile -t ghcr.io/feitian-k8s/master:0.1.0 .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish master/FeitianK8s.Master.csproj -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
ENV DOTNET_gcServer=0 \
    DOTNET_EnableDiagnostics=0
EXPOSE 9000 9001
ENTRYPOINT ["dotnet", "/app/FeitianK8s.Master.dll"]
